"""The layer ops of the reference evaluator: conv, pooling, linear, pad, and the compressed-weight
(`constexpr_*`) dequantization ops coremltools.optimize writes. Same conventions as
runtime/mlprogram/ops.py: float32 compute, the executor stores each output in its declared dtype.

Convolution is im2col + one matmul per group (numpy's BLAS), a few images at a time so the column
matrix stays under COLUMN_BYTES; pooling loops over kernel offsets (at most k*k strided slices),
never over pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runtime.mlprogram.ops import UnsupportedOpError, wide

COLUMN_BYTES = 64 * 2**20  # one conv chunk's im2col matrix, float32


def _ints(values: Any, count: int, default: int) -> list[int]:
    if values is None:
        return [default] * count
    values = [int(v) for v in np.asarray(values).reshape(-1)]
    if len(values) != count:
        raise UnsupportedOpError(f"{len(values)} values where the op has {count} spatial dimensions")
    return values


def spatial_padding(
    pad_type: Any, pad: Any, size: list[int], kernel: list[int], strides: list[int], dilations: list[int]
) -> list[tuple[int, int]]:
    """(before, after) per spatial dimension, as MIL's pad_type says (valid, custom, same, same_lower)."""
    pad_type = str(pad_type)
    if pad_type == "valid":
        return [(0, 0)] * len(size)
    if pad_type == "custom":
        flat = _ints(pad, 2 * len(size), 0)
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(size))]
    if pad_type not in ("same", "same_lower"):
        raise UnsupportedOpError(f"pad_type {pad_type!r}")
    pairs = []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        out = -(-n // s)  # ceil(n / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        small, large = total // 2, total - total // 2
        pairs.append((small, large) if pad_type == "same" else (large, small))
    return pairs


def conv(
    x: Any,
    weight: Any,
    bias: Any = None,
    strides: Any = None,
    pad_type: Any = "valid",
    pad: Any = None,
    dilations: Any = None,
    groups: Any = 1,
) -> np.ndarray:
    """x (N, C, *D) * weight (O, C/groups, *K) + bias (O,) -> (N, O, *D_out); 1 to 3 spatial dims."""
    x, weight = wide(x), wide(weight)
    spatial, groups = x.ndim - 2, int(groups)
    kernel = list(weight.shape[2:])
    strides, dilations = _ints(strides, spatial, 1), _ints(dilations, spatial, 1)
    pads = spatial_padding(pad_type, pad, list(x.shape[2:]), kernel, strides, dilations)
    if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise UnsupportedOpError(f"conv of {x.shape[1]} channels with weight {weight.shape} in {groups} groups")
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    out_channels = weight.shape[0]
    # weight: (O, C/g, *K) -> (g, C/g * prod K, O/g): the right side of each group's matmul.
    w = weight.reshape(groups, out_channels // groups, -1).transpose(0, 2, 1)
    per_image = x.shape[1] * int(np.prod(kernel)) * 4 * int(np.prod(x.shape[2:]))
    chunk = max(1, COLUMN_BYTES // max(per_image, 1))
    outputs = [_conv_chunk(x[i : i + chunk], w, kernel, strides, dilations, groups) for i in range(0, len(x), chunk)]
    out = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
    if bias is not None:
        out += wide(bias).reshape(1, -1, *([1] * spatial))
    return out


def _conv_chunk(
    x: np.ndarray, w: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int], groups: int
) -> np.ndarray:
    spatial = len(kernel)
    axes = tuple(range(2, 2 + spatial))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    windows = sliding_window_view(x, reach, axis=axes)  # (n, C, *D_out_all, *reach)
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in strides) + tuple(slice(None, None, d) for d in dilations)
    windows = windows[index]  # (n, C, *D_out, *K)
    n, channels, out_size = windows.shape[0], windows.shape[1], windows.shape[2 : 2 + spatial]
    positions = int(np.prod(out_size))
    # (n, g, C/g, *D_out, *K) -> (n, g, *D_out, C/g, *K) -> (n, g, P, C/g * prod K): the im2col matrix.
    grouped = windows.reshape(n, groups, channels // groups, *out_size, *kernel)
    order = (0, 1, *range(3, 3 + spatial), 2, *range(3 + spatial, 3 + 2 * spatial))
    columns = grouped.transpose(order).reshape(n, groups, positions, -1)
    out = np.matmul(columns, w)  # (n, g, P, O/g)
    return out.transpose(0, 1, 3, 2).reshape(n, -1, *out_size)


def _pool_geometry(x: np.ndarray, kernel_sizes: Any, strides: Any, pad_type: Any, pad: Any):
    spatial = x.ndim - 2
    kernel = _ints(kernel_sizes, spatial, 1)
    strides = _ints(strides, spatial, 1)
    pads = spatial_padding(pad_type, pad, list(x.shape[2:]), kernel, strides, [1] * spatial)
    return kernel, strides, pads


def _windows(x: np.ndarray, kernel: list[int], strides: list[int], out: list[int]):
    """Each kernel offset's strided slice of the padded x: (n, C, *out) views, k1*k2*... of them."""
    for offset in np.ndindex(*kernel):
        index = tuple(slice(o, o + (size - 1) * s + 1, s) for o, size, s in zip(offset, out, strides))
        yield x[(slice(None), slice(None), *index)]


def max_pool(
    x: Any, kernel_sizes: Any, strides: Any = None, pad_type: Any = "valid", pad: Any = None, ceil_mode: Any = False
) -> np.ndarray:
    x = wide(x)
    kernel, strides, pads = _pool_geometry(x, kernel_sizes, strides, pad_type, pad)
    out = [_pool_out(n, k, s, p, bool(ceil_mode)) for n, k, s, p in zip(x.shape[2:], kernel, strides, pads)]
    # The extra windows ceil_mode adds reach past the padding: -inf there never wins the max.
    extra = [
        max((o - 1) * s + k - (n + p[0] + p[1]), 0) for o, s, k, n, p in zip(out, strides, kernel, x.shape[2:], pads)
    ]
    padded = np.pad(x, [(0, 0), (0, 0), *[(p[0], p[1] + e) for p, e in zip(pads, extra)]], constant_values=-np.inf)
    result = None
    for view in _windows(padded, kernel, strides, out):
        result = view.copy() if result is None else np.maximum(result, view, out=result)
    return result


def avg_pool(
    x: Any,
    kernel_sizes: Any,
    strides: Any = None,
    pad_type: Any = "valid",
    pad: Any = None,
    exclude_padding_from_average: Any = False,
    ceil_mode: Any = False,
) -> np.ndarray:
    if bool(ceil_mode):
        raise UnsupportedOpError("avg_pool with ceil_mode=True (its divisor at the edge is not specified)")
    x = wide(x)
    kernel, strides, pads = _pool_geometry(x, kernel_sizes, strides, pad_type, pad)
    out = [_pool_out(n, k, s, p, False) for n, k, s, p in zip(x.shape[2:], kernel, strides, pads)]
    padded = np.pad(x, [(0, 0), (0, 0), *pads])
    total = None
    for view in _windows(padded, kernel, strides, out):
        total = view.copy() if total is None else np.add(total, view, out=total)
    if not bool(exclude_padding_from_average):
        return total / np.float32(np.prod(kernel))
    # The divisor: how many real (unpadded) elements each window covers.
    ones = np.pad(np.ones((1, 1, *x.shape[2:]), np.float32), [(0, 0), (0, 0), *pads])
    count = sum(_windows(ones, kernel, strides, out))
    return total / count


def _pool_out(size: int, kernel: int, stride: int, pad: tuple[int, int], ceil_mode: bool) -> int:
    span = size + pad[0] + pad[1] - kernel
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad[0] and (pad[0] or pad[1]):
        out -= 1  # MIL's (and PyTorch's) rule: the last window starts inside the input
    return out


def linear(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """x (..., in) @ weight (out, in).T + bias (out,)."""
    out = np.matmul(wide(x), wide(weight).T)
    return out if bias is None else out + wide(bias)


def pad(x: Any, pad: Any, mode: Any = "constant", constant_val: Any = 0.0) -> np.ndarray:
    """`pad` holds (before, after) pairs for x's last len(pad) / 2 dimensions."""
    x, flat = wide(x), [int(p) for p in np.asarray(pad).reshape(-1)]
    pairs = [(0, 0)] * (x.ndim - len(flat) // 2) + [(flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)]
    mode = str(mode)
    if mode == "constant":
        return np.pad(x, pairs, constant_values=float(constant_val))
    if mode in ("reflect", "replicate"):
        return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")
    raise UnsupportedOpError(f"pad mode {mode!r}")


def constexpr_affine_dequantize(quantized_data: Any, zero_point: Any, scale: Any, axis: Any) -> np.ndarray:
    """(data - zero_point) * scale; zero_point and scale are scalars or one per index along `axis`."""
    data = np.asarray(quantized_data).astype(np.float32)
    shape = [1] * data.ndim
    shape[int(axis)] = -1
    offset, scale = (np.asarray(v, np.float32) for v in (zero_point, scale))
    offset, scale = (v.reshape(shape) if v.ndim == 1 else v for v in (offset, scale))
    return (data - offset) * scale


def constexpr_blockwise_shift_scale(data: Any, scale: Any, offset: Any = None) -> np.ndarray:
    """(data - offset) * scale, scale and offset one per block (same rank as data, each
    dimension dividing data's)."""
    data = np.asarray(data).astype(np.float32)
    scale = repeat_blocks(np.asarray(scale, np.float32), data.shape)
    offset = 0.0 if offset is None else repeat_blocks(np.asarray(offset, np.float32), data.shape)
    return (data - offset) * scale


def repeat_blocks(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.ndim != len(shape) or any(size % blocks for size, blocks in zip(shape, values.shape)):
        raise UnsupportedOpError(f"block scale of shape {values.shape} for data of shape {shape}")
    for axis, (size, blocks) in enumerate(zip(shape, values.shape)):
        values = np.repeat(values, size // blocks, axis=axis)
    return values


LAYERS = {
    "conv": conv,
    "max_pool": max_pool,
    "avg_pool": avg_pool,
    "linear": linear,
    "pad": pad,
    "constexpr_affine_dequantize": constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": constexpr_blockwise_shift_scale,
}
