"""The torch.export front end shared by the ExecuTorch (.pte) and LiteRT (.tflite) exporters.

One place that (1) rewrites the modules an edge backend cannot lower, (2) exports the model with
a dynamic or fixed batch, and (3) applies a PT2E quantizer calibrated on our images. Walls measured
with executorch 1.4.1 and litert-torch 0.10 on torch 2.13:

- `nn.LocalResponseNorm` (the paper variant) decomposes to avg_pool3d over the channels, which
  ExecuTorch's kernels do not have ("Missing operator: aten::avg_pool3d.out") and LiteRT lowers to
  a non-builtin StableHLO op. `BandedLRN` computes the same with a fixed 1x1 convolution over x².
- `nn.AdaptiveAvgPool2d((6, 6))` is not delegated to XNNPACK; at the input size the model is
  exported for, the feature maps are often 6x6 already (identity), a whole multiple (a plain
  average pool) or a whole fraction (nearest upsampling), which every backend lowers.
- A batch-1 example lets torch.export specialize the batch to 1: dynamic exports use batch 2.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from export.common import ExportError, first_line, quiet_logger

DYNAMIC_EXAMPLE_BATCH = 2  # not 1: torch.export would specialize the batch dimension to it
CALIBRATION_BATCH = 8  # calibration images per forward pass of the observed model


@contextlib.contextmanager
def quiet_edge_imports() -> Iterator[None]:
    """torchao (which both quantizers import) logs a warning per CUDA kernel library it cannot load on
    a CPU-only machine, and a pytree deprecation through torch's logger: neither is the user's."""
    with quiet_logger("torchao"), quiet_logger("torch.utils._pytree"):
        yield


class BandedLRN(nn.Module):
    """`nn.LocalResponseNorm` as a 1x1 convolution: x / (k + alpha * mean of x² over the `size`
    channels around each one)^beta, the channel window zero-padded as PyTorch pads it
    (size // 2 before, (size - 1) // 2 after). Matches PyTorch to ~1e-6 relative."""

    def __init__(self, lrn: nn.LocalResponseNorm, channels: int) -> None:
        super().__init__()
        self.alpha, self.beta, self.k = float(lrn.alpha), float(lrn.beta), float(lrn.k)
        before, after = lrn.size // 2, (lrn.size - 1) // 2
        band = torch.zeros(channels, channels)  # (out, in): out c averages inputs c - before .. c + after
        for c in range(channels):
            band[c, max(0, c - before) : min(channels, c + after + 1)] = 1.0 / lrn.size
        self.register_buffer("band", band[:, :, None, None])  # (C, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        mean_square = nn.functional.conv2d(x * x, self.band)
        return x / (self.k + self.alpha * mean_square).pow(self.beta)


def edge_ready(model: nn.Module, image_size: int) -> nn.Module:
    """A copy of `model` (eval mode) with LRN as `BandedLRN` and the adaptive pool as what it computes
    at `image_size` (identity, a fixed average pool or nearest upsampling; left as it is when none
    fits); the same function of the input there."""
    model = copy.deepcopy(model).eval()
    _replace_lrn(model)
    features = getattr(model, "features", None)
    pool = getattr(model, "avgpool", None)
    if isinstance(features, nn.Module) and isinstance(pool, nn.AdaptiveAvgPool2d):
        with torch.no_grad():
            height, width = features(torch.zeros(1, 3, image_size, image_size)).shape[2:]  # (1, C, h, w)
        out_h, out_w = _pair(pool.output_size, height, width)
        if (height, width) == (out_h, out_w):
            model.avgpool = nn.Identity()
        elif height % out_h == 0 and width % out_w == 0:
            kernel = (height // out_h, width // out_w)
            model.avgpool = nn.AvgPool2d(kernel, stride=kernel)
        elif out_h % height == 0 and out_w % width == 0:
            # Smaller maps (the cifar variant's 3x3 at 32 px): each output bin holds one input: nearest upsampling.
            model.avgpool = nn.Upsample(scale_factor=(out_h // height, out_w // width), mode="nearest")
    return model


def _replace_lrn(module: nn.Module) -> None:
    """Swap every LocalResponseNorm in a Sequential for BandedLRN sized by the convolution before it."""
    for parent in module.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        channels = None
        for index, child in enumerate(parent):
            if isinstance(child, nn.Conv2d):
                channels = child.out_channels
            elif isinstance(child, nn.LocalResponseNorm):
                if channels is None:
                    raise ExportError("a LocalResponseNorm with no convolution before it cannot be rewritten")
                parent[index] = BandedLRN(child, channels)


def _pair(size: Any, height: int, width: int) -> tuple[int, int]:
    out_h, out_w = (size, size) if isinstance(size, int) else size
    return out_h or height, out_w or width


def example_batch(batch_size: int | None, image_size: int) -> torch.Tensor:
    """The example input torch.export traces with: the fixed batch, or DYNAMIC_EXAMPLE_BATCH."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size or DYNAMIC_EXAMPLE_BATCH, 3, image_size, image_size, generator=generator)


def export_program(
    module: nn.Module, example: torch.Tensor, *, dynamic: bool, max_batch: int | None = None
) -> torch.export.ExportedProgram:
    """torch.export of `module` on `example` (N, 3, S, S); the batch free in 1..max_batch when dynamic."""
    shapes = ({0: torch.export.Dim("batch", min=1, max=max_batch or 1024)},) if dynamic else None
    try:
        return torch.export.export(module, (example,), dynamic_shapes=shapes)
    except Exception as exc:  # torch.export's errors are many classes; one line is what the user needs
        raise ExportError(f"torch.export failed: {first_line(exc)}") from exc


def quantize_pt2e(
    module: nn.Module, quantizer: Any, calibration: Iterable[np.ndarray], image_size: int, *, fold: bool = True
) -> nn.Module:
    """PT2E static quantization: `module` exported with a free batch, observed by `quantizer` on every
    calibration batch (N, 3, S, S float32), converted; a GraphModule with quantize/dequantize pairs."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = example_batch(None, image_size)
    graph = export_program(module, example, dynamic=True).module()
    try:
        observed = prepare_pt2e(graph, quantizer)
        seen = 0
        with torch.no_grad():
            for batch in calibration:
                for start in range(0, len(batch), CALIBRATION_BATCH):
                    observed(torch.from_numpy(np.ascontiguousarray(batch[start : start + CALIBRATION_BATCH])))
                seen += len(batch)
        if not seen:
            raise ExportError("no calibration images to observe")
        converted = convert_pt2e(observed, fold_quantize=fold)
        # Traced from an eval-mode model already; an exported module refuses .eval(), and converters
        # (litert-torch) warn about a module whose flag still says training.
        converted.training = False
        return converted
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"PT2E quantization failed: {first_line(exc)}") from exc


def outside_modules(names: tuple[str, ...]) -> Callable[[Any], bool]:
    """A PT2E node filter: True for a graph node that no module in `names` ("features.0") computed,
    as its nn_module_stack says (where a quantizer has no per-module "leave fp32" setting)."""
    excluded = frozenset(names)

    def outside(node: Any) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        return not any(fqn in excluded for fqn, _ in stack.values())

    return outside


def quantizable_layers(model: nn.Module) -> dict[str, str]:
    """The layers a PT2E quantizer can leave in fp32 (set_module_name(name, None)), in model order:
    every Conv2d and Linear, by its module name ("features.0")."""
    return {name: name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
