"""Layer-by-layer summary: output shape, parameters and multiply-accumulates (MACs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet.model import AlexNet


@dataclass(frozen=True)
class LayerRow:
    name: str  # state_dict prefix, e.g. "features.0"
    kind: str  # module class, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # (C, H, W) or (features,), batch dimension dropped
    parameters: int
    macs: int  # multiply-accumulates for one image


@dataclass(frozen=True)
class ModelSummary:
    variant: str
    num_classes: int
    image_size: int
    rows: tuple[LayerRow, ...]

    @property
    def total_parameters(self) -> int:
        return sum(r.parameters for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "total_parameters": self.total_parameters,
            "total_macs": self.total_macs,
            "layers": [r.__dict__ | {"output_shape": list(r.output_shape)} for r in self.rows],
        }

    def format_table(self) -> str:
        lines = [
            f"AlexNet variant={self.variant} classes={self.num_classes} input=3x{self.image_size}x{self.image_size}"
        ]
        header = f"{'layer':<14}{'type':<19}{'output':>16}{'params':>14}{'MACs':>16}"
        lines += [header, "-" * len(header)]
        for r in self.rows:
            shape = "x".join(str(d) for d in r.output_shape)
            lines.append(f"{r.name:<14}{r.kind:<19}{shape:>16}{r.parameters:>14,}{r.macs:>16,}")
        lines.append("-" * len(header))
        lines.append(f"{'total':<49}{self.total_parameters:>14,}{self.total_macs:>16,}")
        lines.append(
            f"weights: {self.total_parameters * 4 / 2**20:.1f} MiB fp32; {2 * self.total_macs / 1e9:.3f} GFLOPs per image"
        )
        return "\n".join(lines)


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        # every output element is a dot product over (in_channels / groups) * kh * kw inputs
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def summarize(model: AlexNet, image_size: int | None = None) -> ModelSummary:
    """Run one (1, 3, S, S) zero image through `model` and record every leaf layer."""
    image_size = image_size or model.config.default_image_size
    model.check_input_size(image_size, image_size)
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:

            def record(mod: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                rows.append(LayerRow(name, type(mod).__name__, tuple(output.shape[1:]), params, _macs(mod, output)))

            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    # The flatten between avgpool and classifier is a function call, not a module: add its row.
    flat_at = next(i for i, r in enumerate(rows) if r.name == "avgpool") + 1
    flat = LayerRow("flatten", "flatten", (int(torch.tensor(rows[flat_at - 1].output_shape).prod()),), 0, 0)
    rows.insert(flat_at, flat)
    return ModelSummary(model.config.variant, model.config.num_classes, image_size, tuple(rows))
