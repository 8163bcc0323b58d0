"""The paper's layer names (conv1..conv5, fc6..fc8) for any variant, and activations by name.

The state_dict names (``features.3``) differ between variants; the names people use for
AlexNet's layers do not. `layer_names` maps one to the other; `capture` runs images through
the model and keeps the activations of the named layers (forward hooks, removed afterwards).

A convolution's or a hidden linear's activation is the output of the ReLU after it (what the
next layer sees); fc8 is the logits; pool/norm layers are their own output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from alexnet.model import AlexNet
from runtime.errors import DeployError


class LayerError(DeployError, ValueError):
    """A layer name the model does not have."""


def layer_names(model: AlexNet) -> dict[str, str]:
    """state_dict prefix -> paper name, for every leaf module: features.0 -> conv1, ...

    Convolutions count conv1..conv5; a ReLU, pool or norm takes the number of the convolution
    before it (relu1, pool1, norm1); linears are fc6..fc8 and their ReLU/Dropout take the
    number of the linear they belong to (drop6 precedes fc6, relu6 follows it).
    """
    names: dict[str, str] = {}
    conv = 0
    for index, module in enumerate(model.features):
        if isinstance(module, nn.Conv2d):
            conv += 1
        kind = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.MaxPool2d: "pool", nn.LocalResponseNorm: "norm"}
        names[f"features.{index}"] = f"{kind.get(type(module), type(module).__name__.lower())}{conv}"
    names["avgpool"] = "avgpool"
    fc = 5
    for index, module in enumerate(model.classifier):
        if isinstance(module, nn.Linear):
            fc += 1
        prefix = {nn.Linear: "fc", nn.ReLU: "relu", nn.Dropout: "drop"}.get(type(module), "layer")
        names[f"classifier.{index}"] = f"{prefix}{fc + (prefix == 'drop')}"
    return names


def activation_modules(model: AlexNet) -> dict[str, nn.Module]:
    """Paper name -> the module whose output is that layer's activation.

    conv1..conv5 and fc6, fc7: the ReLU right after the layer; fc8: the last linear (logits);
    pool*, norm*, avgpool: the module itself. Ordered as the forward pass runs.
    """
    modules = dict(model.named_modules())
    by_name = {paper: modules[path] for path, paper in layer_names(model).items()}
    result: dict[str, nn.Module] = {}
    for paper, module in by_name.items():
        if paper.startswith("relu"):
            number = int(paper[4:])
            result["conv" + str(number) if number <= 5 else "fc" + str(number)] = module
        elif paper.startswith(("pool", "norm", "avgpool")) or paper == "fc8":
            result[paper] = module
    return result  # in forward order: a conv's entry is made at its ReLU, which comes before the next layer


def spatial_layers(model: AlexNet) -> list[str]:
    """The activations with feature maps (C, H, W): conv*, norm*, pool*, avgpool."""
    return [name for name in activation_modules(model) if not name.startswith("fc")]


def check_layers(model: AlexNet, wanted: list[str], allowed: list[str] | None = None) -> list[str]:
    """`wanted`, each checked against the model's activations (or `allowed`); LayerError names the choices."""
    allowed = allowed if allowed is not None else list(activation_modules(model))
    unknown = [name for name in wanted if name not in allowed]
    if unknown:
        raise LayerError(
            f"unknown layer {', '.join(unknown)} for AlexNet variant {model.config.variant!r}; "
            f"choose from {', '.join(allowed)}"
        )
    if not wanted:
        raise LayerError(f"no layer given; choose from {', '.join(allowed)}")
    return wanted


@contextmanager
def capture(model: AlexNet, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward pass stores `names`' activations (detached copies, batch
    first: (N, C, H, W) or (N, F)) in the yielded dict, replacing the previous pass's."""
    modules = activation_modules(model)
    store: dict[str, torch.Tensor] = {}
    hooks = []
    for name in check_layers(model, names):

        def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            store[name] = output.detach().clone()  # clone: an in-place op later must not change it

        hooks.append(modules[name].register_forward_hook(keep))
    try:
        yield store
    finally:
        for hook in hooks:
            hook.remove()
