"""What every exporter shares: loading the checkpoint, the metadata, output paths, atomic writes.

An export is: checkpoint -> eval-mode model (fp32 or fp16) -> one artifact file (or, for
Core ML, one .mlpackage directory) that appears only when complete, carrying the
alexnet-deploy metadata (`runtime.metadata.ArtifactMetadata`) the runtime predicts from.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from alexnet.backend import checkpoint_metadata
from alexnet.checkpoint import Checkpoint, atomic_write, load_checkpoint
from runtime.errors import DeployError
from runtime.metadata import ArtifactMetadata
from runtime.preprocess import PreprocessSpec

FORMATS = ("torchscript", "onnx", "coreml")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx", "coreml": ".mlpackage"}
PRECISIONS = ("fp32", "fp16")
COREML_INPUTS = ("image", "tensor")


class ExportError(DeployError, RuntimeError):
    """An export could not be made (bad options, unwritable output, converter failure)."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def default_output(checkpoint: str | os.PathLike, fmt: str) -> Path:
    """Beside the checkpoint, same stem: runs/best.pth -> runs/best.onnx."""
    return Path(checkpoint).with_suffix(SUFFIXES[fmt])


def check_options(fmt: str, batch_size: int | None, precision: str, coreml_input: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose fp32 or fp16")
    if batch_size is not None and batch_size < 1:
        raise ExportError(f"batch size must be at least 1, got {batch_size}")
    if coreml_input not in COREML_INPUTS:
        raise ExportError(f"unknown Core ML input kind {coreml_input!r}; choose image or tensor")


def check_output(output: Path) -> None:
    """Fail before the (slow) conversion if the artifact could not be written."""
    parent = output.parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {output}: directory {parent} is not writable")
    if output.is_dir() and output.suffix != ".mlpackage":
        raise ExportError(f"cannot write {output}: it is a directory")


def load_model(checkpoint_path: str | os.PathLike) -> tuple[Checkpoint, nn.Module]:
    """The checkpoint (CheckpointError if unreadable) and its model in eval mode, fp32, on CPU."""
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    return checkpoint, checkpoint.build_model()


def resolve_image_size(checkpoint: Checkpoint, model: nn.Module, image_size: int | None) -> int:
    size = int(image_size or checkpoint.preprocess.crop)
    minimum = getattr(model, "min_image_size", 1)
    if size < minimum:
        raise ExportError(f"--image-size {size} is too small for AlexNet variant {checkpoint.config.variant!r} (minimum {minimum})")
    return size


def export_metadata(checkpoint_path: str | os.PathLike, checkpoint: Checkpoint, *, fmt: str, batch_size: int | None,
                    image_size: int, precision: str) -> ArtifactMetadata:
    """The checkpoint's metadata (alexnet.backend) with this export's format, shape and precision."""
    base = checkpoint_metadata(checkpoint_path, checkpoint)
    spec = base.preprocess
    if image_size != spec.crop:
        # A different input size means a different crop; keep the resize/crop ratio convention.
        spec = PreprocessSpec.for_image_size(image_size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation)
    return dataclasses.replace(base, format=fmt, preprocess=spec, precision=precision,
                               input_shape=(batch_size, 3, image_size, image_size))


class CastWrapper(nn.Module):
    """fp16 weights and compute behind an fp32 interface: (N,3,H,W) f32 -> half -> logits f32.

    Runtimes then feed the same fp32 batch to every artifact, whatever its precision.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def for_precision(model: nn.Module, precision: str) -> nn.Module:
    return CastWrapper(model).eval() if precision == "fp16" else model


def example_input(batch_size: int | None, image_size: int, seed: int = 0) -> torch.Tensor:
    # A dynamic-batch trace uses 2, so that no exporter specializes the batch to 1.
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size or 2, 3, image_size, image_size, generator=generator)


def write_file(output: Path, write: Callable[[str], Any]) -> None:
    """`write(tmp)` beside `output`, renamed into place only when complete."""
    try:
        atomic_write(output, write)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None


def write_directory(output: Path, write: Callable[[str], Any]) -> None:
    """`write(tmp_dir)` builds the directory beside `output`; it replaces `output` only when complete."""
    try:
        tmp_parent = tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None
    tmp = Path(tmp_parent) / output.name
    try:
        write(str(tmp))
        if output.exists():
            # os.replace cannot swap a non-empty directory: move the old one aside first.
            old = Path(tmp_parent) / (output.name + ".old")
            os.replace(output, old)
        os.replace(tmp, output)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
