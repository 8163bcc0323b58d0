"""AlexNet from nn primitives, in three variants.

- ``torchvision``: the layout of torchvision's ``alexnet`` (64-192-384-256-256). Its
  state_dict keys and shapes are torchvision's, so torchvision's ImageNet weights load
  with ``strict=True``.
- ``paper``: Krizhevsky, Sutskever & Hinton (2012) as published: 96-256-384-384-256,
  local response normalization after conv1 and conv2, conv2/4/5 split in two groups
  (the paper's two GPUs), 227x227 input.
- ``cifar``: the 32x32 adaptation used by from-scratch CIFAR-10 AlexNets: a stride-4
  conv1 with padding 4 and no pooling after it, so a 32x32 image keeps 8x8 maps.

Every variant ends in ``AdaptiveAvgPool2d((6, 6))`` and the same three-layer classifier,
so any input at or above the variant's minimum size works.

``width_divisor`` (default 1: AlexNet as published) divides every layer's width (channels and
hidden units) and keeps the layer structure: kernels, strides, groups, pooling, state_dict keys.
The tests use it to run export, runtime and CLI paths on a model of a few MB instead of 230 MB.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from alexnet.input_size import VARIANT_IMAGE_SIZE, VARIANTS
from runtime.errors import DeployError
from runtime.metadata import MAX_CLASSES  # the artifacts' bound on classes: a checkpoint can ask no more
from runtime.preprocess import short_repr

# The input size each variant was designed for: the default of a fresh, untrained model's layer
# summary (alexnet-info --variant) and benchmark. A checkpoint's summary and export default to
# the checkpoint's own crop size instead (its preprocess.crop: the size it was trained at).
DEFAULT_IMAGE_SIZE = VARIANT_IMAGE_SIZE  # torchvision 224, paper 227, cifar 32 (alexnet/input_size.py, torch-free)

# Width divisors that keep every layer whole: each divides all channel counts (64..384), the
# hidden 4096, and leaves the paper's two conv groups an even split (96 / 16 = 6 channels).
WIDTH_DIVISORS = (1, 2, 4, 8, 16)


class ConfigError(DeployError, ValueError):
    """A model config field has the wrong type or is out of range (a one-line error naming the field;
    still a ValueError for existing callers)."""


@dataclass(frozen=True)
class AlexNetConfig:
    """Everything needed to rebuild the network; stored in every checkpoint.

    Checked on construction, before any layer exists: a checkpoint's config is untrusted, and one
    asking for 10**9 classes would otherwise allocate terabytes on the way to failing."""

    variant: str = "torchvision"
    num_classes: int = 1000
    dropout: float = 0.5
    width_divisor: int = 1  # 1: the published widths; >1 only for tests and quick experiments

    def __post_init__(self) -> None:
        # Messages start with the field's name: from_dict prefixes "model_config." to it.
        if not isinstance(self.variant, str) or self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {short_repr(self.variant)}")
        if not _is_int(self.num_classes) or not 1 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(
                f"num_classes must be an integer from 1 to {MAX_CLASSES:,}, got {short_repr(self.num_classes)}"
            )
        # NaN fails the comparison, so it is refused with the rest.
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a number in [0, 1), got {short_repr(self.dropout)}")
        if not _is_int(self.width_divisor) or self.width_divisor not in WIDTH_DIVISORS:
            raise ConfigError(f"width_divisor must be one of {WIDTH_DIVISORS}, got {short_repr(self.width_divisor)}")
        # numpy scalars pass the checks above; plain Python numbers keep to_dict JSON-ready and == exact.
        for name, kind in (("num_classes", int), ("dropout", float), ("width_divisor", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Full-width models keep the config schema they always had: checkpoints and artifacts
        # made before width_divisor existed and after are the same bytes.
        if data["width_divisor"] == 1:
            del data["width_divisor"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> AlexNetConfig:
        """From a checkpoint's untrusted model_config: any fault is a one-line ConfigError naming the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"model_config must be a dict, got {short_repr(data)}")
        known = {f.name for f in fields(cls)}
        # Unknown keys are refused, not ignored: one could only come from a newer format that changes
        # the architecture, and building without it would make a different model with these weights.
        unknown = sorted(short_repr(key, 40) for key in data if key not in known)
        if unknown:
            raise ConfigError(
                f"unknown model_config keys: {', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}"
            )
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"model_config.{exc}") from None

    @property
    def default_image_size(self) -> int:
        return DEFAULT_IMAGE_SIZE[self.variant]


def _is_int(value: Any) -> bool:
    # bool is an int subclass, and 1e9 or "10" are not integers: refused, never coerced.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2)


def _torchvision_features(w: int) -> nn.Sequential:
    # Index layout (features.0, .3, .6, .8, .10) must match torchvision's exactly. w: width divisor.
    return nn.Sequential(
        nn.Conv2d(3, 64 // w, kernel_size=11, stride=4, padding=2),
        _relu(),
        _pool(),
        nn.Conv2d(64 // w, 192 // w, kernel_size=5, padding=2),
        _relu(),
        _pool(),
        nn.Conv2d(192 // w, 384 // w, kernel_size=3, padding=1),
        _relu(),
        nn.Conv2d(384 // w, 256 // w, kernel_size=3, padding=1),
        _relu(),
        nn.Conv2d(256 // w, 256 // w, kernel_size=3, padding=1),
        _relu(),
        _pool(),
    )


def _paper_features(w: int) -> nn.Sequential:
    # PyTorch's LRN divides alpha by `size`; the paper's formula does not, so the
    # paper's alpha=1e-4 becomes 5e-4 here: b = a / (k + 1e-4 * sum(a^2)) ** 0.75.
    lrn = lambda: nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 96 // w, kernel_size=11, stride=4),
        _relu(),
        lrn(),
        _pool(),  # 227 -> 55 -> 27
        nn.Conv2d(96 // w, 256 // w, kernel_size=5, padding=2, groups=2),
        _relu(),
        lrn(),
        _pool(),  # 27 -> 13
        nn.Conv2d(256 // w, 384 // w, kernel_size=3, padding=1),
        _relu(),  # conv3 crosses both GPUs
        nn.Conv2d(384 // w, 384 // w, kernel_size=3, padding=1, groups=2),
        _relu(),
        nn.Conv2d(384 // w, 256 // w, kernel_size=3, padding=1, groups=2),
        _relu(),
        _pool(),  # 13 -> 6
    )


def _cifar_features(w: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 96 // w, kernel_size=11, stride=4, padding=4),
        _relu(),  # 32 -> 8, no pool
        nn.Conv2d(96 // w, 256 // w, kernel_size=5, padding=2),
        _relu(),
        _pool(),  # 8 -> 3
        nn.Conv2d(256 // w, 384 // w, kernel_size=3, padding=1),
        _relu(),
        nn.Conv2d(384 // w, 384 // w, kernel_size=3, padding=1),
        _relu(),
        nn.Conv2d(384 // w, 256 // w, kernel_size=3, padding=1),
        _relu(),
        _pool(),  # 3 -> 1
    )


# Each variant's convolutional layers (the `features` of the model), one table per variant.
_FEATURES = {"torchvision": _torchvision_features, "paper": _paper_features, "cifar": _cifar_features}


def _features(variant: str, width_divisor: int = 1) -> nn.Sequential:
    return _FEATURES[variant](width_divisor)  # AlexNetConfig admits only a variant of this table


def _spatial_out(size: int, features: nn.Sequential) -> int:
    """Height (or width) after `features` for a square input of `size`; <1 means too small."""
    for layer in features:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p = (_pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding))
            size = (size + 2 * p - k) // s + 1
            if size < 1:
                return size
    return size


def _pair(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


class InputTooSmallError(DeployError, ValueError):
    """The image is smaller than the variant's convolutions and poolings can take (a user-facing,
    one-line error: CLIs print it and exit 1; still a ValueError for existing callers)."""


class AlexNet(nn.Module):
    def __init__(self, config: AlexNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or AlexNetConfig()
        w = self.config.width_divisor
        self.features = _features(self.config.variant, w)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=self.config.dropout),
            nn.Linear(256 // w * 6 * 6, 4096 // w),  # (N, 256*6*6) -> (N, 4096) at full width
            nn.ReLU(inplace=True),
            nn.Dropout(p=self.config.dropout),
            nn.Linear(4096 // w, 4096 // w),
            nn.ReLU(inplace=True),
            nn.Linear(4096 // w, self.config.num_classes),
        )
        self.min_image_size = next(s for s in range(1, 1024) if _spatial_out(s, self.features) >= 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions, N(0, 0.01) linears, zero biases (as torchvision's VGG).

        AlexNet has no normalization layers; with PyTorch's default (uniform, a=sqrt(5)) init
        the signal shrinks layer by layer and SGD barely moves for epochs. He init keeps the
        convolutions' gradients at a usable scale; small linears keep the first logits near
        uniform, so training starts stable without normalization.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def check_input_size(self, height: int, width: int) -> None:
        if min(height, width) < self.min_image_size:
            raise InputTooSmallError(
                f"AlexNet variant {self.config.variant!r} needs inputs of at least "
                f"{self.min_image_size}x{self.min_image_size} pixels, got {height}x{width}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, H, W) -> features (N, 256, h, w) -> pooled (N, 256, 6, 6) -> logits (N, classes)
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and not torch.onnx.is_in_onnx_export():
            self.check_input_size(x.shape[-2], x.shape[-1])
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_alexnet(
    *, variant: str = "torchvision", num_classes: int = 1000, dropout: float = 0.5, width_divisor: int = 1
) -> AlexNet:
    """Build a freshly initialized AlexNet (no weights are downloaded, ever)."""
    config = AlexNetConfig(variant=variant, num_classes=num_classes, dropout=dropout, width_divisor=width_divisor)
    return AlexNet(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
