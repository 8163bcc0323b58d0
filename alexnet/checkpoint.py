"""Checkpoints: one format, in `.pth` (torch.save) or `.safetensors`.

A `.pth` checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {
      "format": "alexnet-deploy-checkpoint", "format_version": 1,
      "package_version": "0.1.0",
      "model_config": {"variant": ..., "num_classes": ..., "dropout": ...},
      "class_names": [...],
      "preprocess": {"resize": ..., "crop": ..., "mean": [...], "std": [...], "interpolation": ...},
      "model_state": {name: tensor},
      "training": {...}            # optional: optimizer, scheduler, epoch, metrics, RNG states
    }

A `.safetensors` file holds the model tensors; everything else but "training" goes into
its string metadata as JSON under "alexnet_deploy". A bare state_dict in torchvision's
layout (torchvision's ImageNet AlexNet weights) loads as variant "torchvision" with the
1000 ImageNet class names and ImageNet preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from alexnet import __version__
from alexnet.model import AlexNet, AlexNetConfig
from runtime.errors import DeployError
from runtime.preprocess import PreprocessSpec

FORMAT_NAME = "alexnet-deploy-checkpoint"
FORMAT_VERSION = 1
SAFETENSORS_KEY = "alexnet_deploy"


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
    extra: dict[str, Any] = field(default_factory=dict)

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
            raise CheckpointError(f"checkpoint does not fit {where}: layer {name} {tuple(tensor.shape)} is missing from the checkpoint")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint does not fit {where}: layer {name} has shape {tuple(state[name].shape)} "
                f"in the checkpoint but {tuple(tensor.shape)} in the model"
            )
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise CheckpointError(f"checkpoint does not fit {where}: unexpected layer {unexpected[0]} {tuple(state[unexpected[0]].shape)}")
    model.load_state_dict(state, strict=True)


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call `write(tmp_path)` on a temp file beside `path`, then rename it into place.

    A crash (or a full disk) mid-write leaves the previous file at `path` untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write `.pth` or `.safetensors` (by suffix), atomically."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot save checkpoint: directory {path.parent} does not exist")
    state = {k: v.detach().cpu().contiguous() for k, v in checkpoint.model_state.items()}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            header = checkpoint.to_dict()
            del header["model_state"]
            header.pop("training", None)  # weights-only format: optimizer state stays in .pth
            atomic_write(path, lambda tmp: save_file(state, tmp, metadata={SAFETENSORS_KEY: json.dumps(header)}))
        else:
            data = checkpoint.to_dict()
            data["model_state"] = state
            atomic_write(path, lambda tmp: torch.save(data, tmp))
    except OSError as exc:
        raise CheckpointError(f"cannot save checkpoint {path}: {exc.strerror or exc}") from None
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint in any supported form, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler refuses anything but tensors and plain containers;
        # its useful part is the line after "WeightsUnpickler error:".
        detail = str(exc).split("WeightsUnpickler error:")[-1].strip().split("\n")[0].strip()
        detail = detail.split(" was not an allowed global")[0] or "unsupported content"
        raise CheckpointError(
            f"{path} is not a plain-weights checkpoint and was not unpickled (weights_only=True refused it: {detail})"
        ) from None
    except Exception as exc:  # torch.load on foreign bytes raises many types (RuntimeError, struct.error, ...)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict or state_dict")
    if data.get("format") == FORMAT_NAME:
        return _from_dict(data, path)
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return _from_bare_state_dict(data, path)
    raise CheckpointError(f"{path} is neither an alexnet-deploy checkpoint nor a bare AlexNet state_dict")


def _from_dict(data: dict[str, Any], path: Path) -> Checkpoint:
    version = data.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {version}, newer than this alexnet-deploy ({FORMAT_VERSION}); upgrade")
    try:
        return Checkpoint(
            config=AlexNetConfig.from_dict(data["model_config"]),
            model_state=data["model_state"],
            class_names=[str(n) for n in data["class_names"]],
            preprocess=PreprocessSpec.from_dict(data["preprocess"]),
            training=data.get("training"),
            package_version=str(data.get("package_version", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is a malformed alexnet-deploy checkpoint: {exc}") from None


def _from_bare_state_dict(state: dict[str, torch.Tensor], path: Path) -> Checkpoint:
    """torchvision's layout: the class count comes from the last layer's shape."""
    last = state.get("classifier.6.weight")
    if last is None or "features.0.weight" not in state:
        raise CheckpointError(f"{path} is a state_dict but not in torchvision's AlexNet layout (no features.0/classifier.6)")
    num_classes = int(last.shape[0])
    names = imagenet_class_names() if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]
    checkpoint = Checkpoint(
        config=AlexNetConfig(variant="torchvision", num_classes=num_classes),
        model_state=state,
        class_names=names,
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
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    if header is None:
        return _from_bare_state_dict(state, path)
    data = json.loads(header)
    data["model_state"] = state
    return _from_dict(data, path)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
