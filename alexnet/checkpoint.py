"""Checkpoints: one format, in `.pth` (torch.save) or `.safetensors`.

A `.pth` checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {
      "format": "alexnet-deploy-checkpoint", "format_version": 1,
      "package_version": "0.1.0",
      "model_config": {"variant": ..., "num_classes": ..., "dropout": ...},  # + "width_divisor" when not 1
      "class_names": [...],
      "preprocess": {"resize": ..., "crop": ..., "mean": [...], "std": [...], "interpolation": ...},
      "model_state": {name: tensor},
      "training": {...}            # optional: alexnet.recipe.TrainState.to_dict()
    }

"training" holds "epoch" (epochs done), "best_top1", "history" (the metrics rows) and "args" (the
run's TrainArgs); a resumable last.pth adds "optimizer" and "scaler" (their state_dicts). No
scheduler (the learning rate is a function of the step) and no RNG states (each epoch reseeds
from (seed, epoch, rank)). `load_checkpoint` passes the section on as a dict; resuming checks it.

A `.safetensors` file holds the model tensors; everything else but "training" goes into
its string metadata as JSON under "alexnet_deploy". A bare state_dict in torchvision's
layout (torchvision's ImageNet AlexNet weights) loads as variant "torchvision" with the
1000 ImageNet class names and ImageNet preprocessing.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from alexnet import __version__
from alexnet.model import AlexNet, AlexNetConfig
from runtime import outputs
from runtime.errors import DeployError
from runtime.metadata import METADATA_KEY
from runtime.preprocess import PreprocessSpec

FORMAT_NAME = "alexnet-deploy-checkpoint"
FORMAT_VERSION = 1
SAFETENSORS_KEY = METADATA_KEY  # the safetensors header key: the artifacts' metadata key


class CheckpointError(DeployError, ValueError):
    """A checkpoint is missing, unreadable, unsafe, or does not fit the model."""


@dataclass
class Checkpoint:
    config: AlexNetConfig
    model_state: dict[str, torch.Tensor]
    class_names: list[str]
    preprocess: PreprocessSpec
    training: dict[str, Any] | None = None
    package_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "package_version": self.package_version,
            "model_config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
            "model_state": self.model_state,
        }
        if self.training is not None:
            data["training"] = self.training
        return data

    def build_model(self) -> AlexNet:
        """The model in eval mode with these weights (strict: every layer must fit)."""
        model = AlexNet(self.config)
        load_state_into(model, self.model_state)
        return model.eval()


def default_class_names(num_classes: int) -> list[str]:
    """Names for weights that carry none: ImageNet's for 1000 classes, else class_0, class_1, ..."""
    return imagenet_class_names() if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]


def imagenet_class_names() -> list[str]:
    text = resources.files("alexnet").joinpath("assets/imagenet_classes.txt").read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    assert len(names) == 1000, "the packaged ImageNet class list must have 1000 names"
    return names


def load_state_into(model: AlexNet, state: dict[str, torch.Tensor]) -> None:
    """`model.load_state_dict(state, strict=True)` with an error naming the first mismatch."""
    expected = model.state_dict()
    where = f"AlexNet(variant={model.config.variant!r}, num_classes={model.config.num_classes})"
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(
                f"checkpoint does not fit {where}: layer {name} {tuple(tensor.shape)} is missing from the checkpoint"
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint does not fit {where}: layer {name} has shape {tuple(state[name].shape)} "
                f"in the checkpoint but {tuple(tensor.shape)} in the model"
            )
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise CheckpointError(
            f"checkpoint does not fit {where}: unexpected layer {unexpected[0]} {tuple(state[unexpected[0]].shape)}"
        )
    model.load_state_dict(state, strict=True)


def _tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint dict: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write `.pth` or `.safetensors` (by suffix), atomically (see runtime.outputs for special files)."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model_state.items()}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            header = checkpoint.to_dict()
            del header["model_state"]
            header.pop("training", None)  # weights-only format: optimizer state stays in .pth
            metadata = {SAFETENSORS_KEY: outputs.dumps_json(header)}
            outputs.atomic_write(
                path, lambda tmp: save_file(state, tmp, metadata=metadata), expected_bytes=_tensor_bytes(state)
            )
        else:
            data = checkpoint.to_dict()
            data["model_state"] = state
            # torch.save raises RuntimeError ("enforce fail at inline_container.cc") on a full disk:
            # atomic_write turns it, like OSError, into an OutputError.
            outputs.atomic_write(path, lambda tmp: torch.save(data, tmp), expected_bytes=_tensor_bytes(data))
    except outputs.OutputError as exc:
        raise CheckpointError(f"cannot save checkpoint {path}: {exc.reason}") from exc
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint in any supported form, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file"
        )
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(path, exc)
        if refused is None:
            raise CheckpointError(_unreadable(path, exc)) from exc
        # Not torch's text: it suggests retrying with weights_only=False, the one thing not to do with this file.
        raise CheckpointError(
            f"{path} contains code or objects outside the allowed set (tensors and plain "
            f"containers): the global {refused}; it will not be loaded"
        ) from exc
    except Exception as exc:  # torch.load on foreign bytes raises many types (RuntimeError, struct.error, ...)
        raise CheckpointError(_unreadable(path, exc)) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict or state_dict")
    if data.get("format") == FORMAT_NAME:
        return _from_dict(data, path)
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return _from_bare_state_dict(data, path)
    raise CheckpointError(f"{path} is neither an alexnet-deploy checkpoint nor a bare AlexNet state_dict")


def _refused_global(path: Path, exc: Exception) -> str | None:
    """The global the weights-only unpickler refused, from its message or torch's static scan
    of the pickle (which executes nothing); None when neither names one."""
    message = str(exc)
    if "GLOBAL " in message:
        return message.split("GLOBAL ", 1)[1].split()[0]
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only for the message; e.g. a legacy (non-zip) pickle is not scanned
        found = []
    return found[0] if found else None


def _unreadable(path: Path, exc: Exception) -> str:
    """Why torch.load could not read `path`, saying plainly when it is no checkpoint at all."""
    import zipfile  # here, not at the top: only this error path needs it

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in archive.namelist()):
                    return (
                        f"{path} is not a PyTorch checkpoint: a zip archive without the data.pkl that torch.save writes"
                    )
        else:
            with open(path, "rb") as handle:
                if handle.read(1) != b"\x80":
                    return f"{path} is not a PyTorch checkpoint: neither a torch.save zip archive nor a pickle"
    except (OSError, zipfile.BadZipFile):
        pass  # torch's own reason below
    # Skip torch's weights_only boilerplate (which suggests the unsafe retry) for its actual reason.
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [
        line.strip() for line in str(exc).splitlines() if line.strip() and not line.strip().startswith(boilerplate)
    ]
    detail = lines[0].removeprefix("WeightsUnpickler error:").strip() if lines else ""
    return f"{path} is not a readable PyTorch checkpoint: {detail or type(exc).__name__}"


def _from_dict(data: dict[str, Any], path: Path) -> Checkpoint:
    from runtime.metadata import check_class_names  # metadata bounds, defined once in runtime

    version = data.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path} is a malformed alexnet-deploy checkpoint: format_version must be an integer, got {version!r:.40}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {version}, newer than this alexnet-deploy ({FORMAT_VERSION}); upgrade"
        )
    try:
        if not isinstance(data.get("model_state"), dict):
            raise TypeError("model_state must be a dict of tensors")
        config = AlexNetConfig.from_dict(data["model_config"])  # bounded: no model is built from it yet
        names = list(check_class_names(data["class_names"]))
        if len(names) != config.num_classes:  # cheaper to refuse here than after building the last layer
            raise ValueError(f"model_config.num_classes is {config.num_classes:,} but class_names has {len(names):,}")
        return Checkpoint(
            config=config,
            model_state=data["model_state"],
            class_names=names,
            preprocess=PreprocessSpec.from_dict(data["preprocess"]),
            training=data.get("training"),
            package_version=str(data.get("package_version", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is a malformed alexnet-deploy checkpoint: {exc}") from exc


def _from_bare_state_dict(state: dict[str, torch.Tensor], path: Path) -> Checkpoint:
    """torchvision's layout: the class count comes from the last layer's shape."""
    last = state.get("classifier.6.weight")
    if last is None or "features.0.weight" not in state:
        raise CheckpointError(
            f"{path} is a state_dict but not in torchvision's AlexNet layout (no features.0/classifier.6)"
        )
    try:  # first: a (10**9, 0) tensor is empty, but 10**9 default names would not be
        config = AlexNetConfig(variant="torchvision", num_classes=int(last.shape[0]))
    except ValueError as exc:
        raise CheckpointError(f"{path} is a state_dict with classifier.6.weight {tuple(last.shape)}: {exc}") from exc
    checkpoint = Checkpoint(
        config=config,
        model_state=state,
        class_names=default_class_names(config.num_classes),
        preprocess=PreprocessSpec(),
        package_version="",
    )
    load_state_into(AlexNet(checkpoint.config), state)  # fail now, naming the layer, if it does not fit
    return checkpoint


def _load_safetensors(path: Path, map_location: str | torch.device) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
            header = (handle.metadata() or {}).get(SAFETENSORS_KEY)
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if header is None:
        return _from_bare_state_dict(state, path)
    try:
        data = json.loads(header)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: its {SAFETENSORS_KEY} header is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: its {SAFETENSORS_KEY} header must be a JSON object, not {type(data).__name__}")
    data["model_state"] = state
    return _from_dict(data, path)
