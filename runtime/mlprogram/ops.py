"""The ML Program ops the reference evaluator executes, in numpy, as the MIL op definitions say
(coremltools.converters.mil.mil.ops.defs, iOS15-iOS18).

Each op is a function of its named inputs (numpy arrays; attributes arrive as the numpy values of
their consts) returning its outputs. Precision: float inputs are widened to float32 and every op
computes in float32; the executor (runtime.mlprogram.program) then stores each output in the dtype
the program declares for it, so an fp16 program rounds to fp16 after every op, as Core ML stores
fp16 activations between ops. What the hardware does inside one op (an fp16 multiply-accumulate on
the GPU or Neural Engine) is not modelled: see runtime/mlprogram/__init__.py for the tolerance.
The layer ops (conv, pooling, linear, pad, dequantization) are in runtime/mlprogram/layers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.errors import DeployError


class UnsupportedOpError(DeployError, ValueError):
    """An op, or a setting of one, the reference evaluator does not implement: never guessed at."""


# MIL dtype names (cast's `dtype` attribute) -> numpy.
DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def wide(x: Any) -> np.ndarray:
    """x as an array, fp16 widened to float32 (exactly: every fp16 value is a float32 value)."""
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def op(x: Any, y: Any) -> np.ndarray:
        return fn(wide(x), wide(y))  # numpy broadcasting is MIL's

    return op


def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def op(x: Any) -> np.ndarray:
        return fn(wide(x))

    return op


def cast(x: Any, dtype: Any) -> np.ndarray:
    name = str(dtype)
    if name not in DTYPES:
        raise UnsupportedOpError(f"cast to {name!r}")
    return np.asarray(x).astype(DTYPES[name])


def real_div(x: Any, y: Any) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):  # x/0 is inf or nan, as on the device
        return np.true_divide(wide(x), wide(y))


def power(x: Any, y: Any) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.power(wide(x), wide(y))


def clip(x: Any, alpha: Any, beta: Any) -> np.ndarray:
    return np.minimum(np.maximum(wide(x), wide(alpha)), wide(beta))


def leaky_relu(x: Any, alpha: Any = 0.01) -> np.ndarray:
    x = wide(x)
    return np.where(x >= 0, x, x * wide(alpha))


def softmax(x: Any, axis: Any = -1) -> np.ndarray:
    x = wide(x)
    shifted = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return shifted / shifted.sum(axis=int(axis), keepdims=True)


def rsqrt(x: Any, epsilon: Any = 1e-12) -> np.ndarray:
    return 1.0 / np.sqrt(wide(x) + wide(epsilon))


def reshape(x: Any, shape: Any) -> np.ndarray:
    """-1 is inferred; 0 copies x's dimension, counted from the right (iOS 17's rule, which is
    iOS 15's wherever iOS 15 allows a 0: len(shape) == rank(x))."""
    x, shape = np.asarray(x), [int(s) for s in np.asarray(shape).reshape(-1)]
    offset = x.ndim - len(shape)
    target = [(x.shape[i + offset] if 0 <= i + offset < x.ndim else 1) if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(target)


def squeeze(x: Any, axes: Any = None) -> np.ndarray:
    x = np.asarray(x)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(int(a) for a in np.asarray(axes).reshape(-1)))


def expand_dims(x: Any, axes: Any) -> np.ndarray:
    return np.expand_dims(np.asarray(x), tuple(int(a) for a in np.asarray(axes).reshape(-1)))


def transpose(x: Any, perm: Any) -> np.ndarray:
    return np.transpose(np.asarray(x), [int(p) for p in np.asarray(perm).reshape(-1)])


def concat(values: tuple[Any, ...], axis: Any, interleave: Any = False) -> np.ndarray:
    if bool(interleave):
        raise UnsupportedOpError("concat with interleave=True")
    return np.concatenate([np.asarray(v) for v in values], axis=int(axis))


def matmul(x: Any, y: Any, transpose_x: Any = False, transpose_y: Any = False) -> np.ndarray:
    """np.matmul's broadcasting is MIL's: (..., m, k) @ (..., k, n); a 1-D side is a vector."""
    x, y = wide(x), wide(y)
    if bool(transpose_x) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if bool(transpose_y) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def reduce(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def op(x: Any, axes: Any = None, keep_dims: Any = False) -> np.ndarray:
        axis = None if axes is None else tuple(int(a) for a in np.asarray(axes).reshape(-1))
        return fn(wide(x), axis=axis, keepdims=bool(keep_dims))

    return op


def classify(probabilities: Any, classes: Any) -> tuple[list[str], np.ndarray]:
    """A classifier's outputs: the top class's name per row, and the class -> score dictionary,
    kept as the score rows (N, classes) in `classes` order (the dictionary's keys)."""
    scores = wide(probabilities)
    names = [str(c) for c in np.asarray(classes).reshape(-1)]
    if scores.shape[-1] != len(names):
        raise UnsupportedOpError(f"classify: {scores.shape[-1]} scores for {len(names)} classes")
    rows = scores.reshape(-1, len(names))
    return [names[i] for i in rows.argmax(1)], scores


OPS: dict[str, Callable[..., Any]] = {
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": real_div,
    "pow": power,
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "sigmoid": _unary(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "tanh": _unary(np.tanh),
    "exp": _unary(np.exp),
    "sqrt": _unary(np.sqrt),
    "abs": _unary(np.abs),
    "identity": lambda x: np.asarray(x),
    "rsqrt": rsqrt,
    "clip": clip,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
    "cast": cast,
    "reshape": reshape,
    "squeeze": squeeze,
    "expand_dims": expand_dims,
    "transpose": transpose,
    "concat": concat,
    "matmul": matmul,
    "reduce_mean": reduce(np.mean),
    "reduce_sum": reduce(np.sum),
    "reduce_max": reduce(np.max),
    "classify": classify,
}
