"""What every exporter shares: the metadata, output paths, atomic writes (the checkpoint: export.source).

An export is: checkpoint -> eval-mode model (fp32 or fp16) -> one artifact file (or, for
Core ML, one .mlpackage directory) that appears only when complete, carrying the
alexnet-deploy metadata (`runtime.metadata.ArtifactMetadata`) the runtime predicts from.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet import __version__
from alexnet.checkpoint import Checkpoint
from export.source import Source
from runtime import formats, outputs
from runtime.errors import DeployError, first_line, quiet_logger  # noqa: F401 (the exporters' imports)
from runtime.formats import PRECISIONS
from runtime.metadata import BYTES_PER_WEIGHT, ArtifactMetadata
from runtime.preprocess import PreprocessSpec

# From the format table (runtime/formats.py): the formats written as one artifact (--format all), and
# the suffix each is written with. A Triton repository is written by export/to_triton.py on its own.
FORMATS = formats.names(in_all=True)
SUFFIXES = {name: formats.FORMATS[name].suffix for name in FORMATS}
COREML_INPUTS = ("image", "tensor")


class ExportError(DeployError, RuntimeError):
    """An export could not be made (bad options, unwritable output, converter failure)."""


def default_precision(fmt: str) -> str:
    return formats.get(fmt).default_precision


def applies(fmt: str, precision: str) -> bool:
    """Whether `fmt` has a `precision` export (the format table says: TorchScript has no int8)."""
    return precision in formats.get(fmt).precisions


def resolve_output(
    checkpoint: str | os.PathLike, fmt: str, output: str | os.PathLike | None, tag: str | None = None
) -> Path:
    """Default beside the checkpoint, same stem (runs/best.pth -> runs/best.onnx; with tag "int8",
    runs/best-int8.onnx); an existing directory (other than a .mlpackage to replace) gets that
    name inside it, like cp."""
    stem = Path(checkpoint).stem + (f"-{tag}" if tag else "")
    name = stem + SUFFIXES[fmt]
    if output is None:
        return Path(checkpoint).parent / name
    output = Path(output)
    replaced = formats.get(fmt).directory and output.suffix in formats.get(fmt).suffixes  # a .mlpackage
    return output / name if output.is_dir() and not replaced else output


def check_options(fmt: str, batch_size: int | None, precision: str, coreml_input: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    table = formats.get(fmt)
    if not applies(fmt, precision):
        gated = [f.name for f in formats.FORMATS.values() if f.in_all and f.gated_int8 and precision in f.precisions]
        hint = " or ".join(f"--format {name} --precision int8" for name in gated) if precision == "int8" else ""
        hint = f"; use {hint}" if hint else ""
        raise ExportError(f"{table.title} has no {precision} export (it has {', '.join(table.precisions)}){hint}")
    if table.gated_int8 and precision == "int8" and batch_size is not None and not table.fixed_batch:
        raise ExportError(f"an int8 {table.title} artifact takes any batch size; drop --batch")
    if batch_size is not None and batch_size < 1:
        raise ExportError(f"batch size must be at least 1, got {batch_size}")
    if batch_size is not None and table.max_batch is not None and batch_size > table.max_batch:
        raise ExportError(
            f"{table.title} runs at most {table.max_batch} images per call, not {batch_size}; "
            f"drop --batch (the runtime splits larger batches)"
        )
    if coreml_input not in COREML_INPUTS:
        raise ExportError(f"unknown Core ML input kind {coreml_input!r}; choose image or tensor")
    if fmt == "coreml" and coreml_input == "image" and batch_size not in (None, 1):
        raise ExportError(
            f"a Core ML image input takes one image at a time, not batches of {batch_size}; "
            "use coreml_input='tensor' (--coreml-input tensor) for a batch"
        )


def check_output(output: Path, fmt: str, checkpoint: str | os.PathLike) -> None:
    """Fail before the (slow) conversion if the artifact could not be written."""
    if output.resolve() == Path(checkpoint).resolve():
        # e.g. a checkpoint saved as best.pt exported to TorchScript with the default name.
        raise ExportError(f"the {fmt} artifact would overwrite the checkpoint {checkpoint}; choose another output (-o)")
    table = formats.get(fmt)
    if (table.directory or table.companions) and output.suffix != table.suffix:
        # coremltools saves an ML Program only as a .mlpackage directory; OpenVINO finds an IR's
        # weights by replacing .xml with .bin.
        raise ExportError(
            f"cannot write {output}: a {table.title} artifact is a {table.suffix} (got {output.suffix or 'no suffix'})"
        )
    try:
        outputs.check_output_path(output, directory_ok=table.directory)
        for companion in table.companions:  # model.bin beside model.xml
            outputs.check_output_path(output.with_suffix(companion))
    except outputs.OutputError as exc:
        raise ExportError(str(exc)) from exc


def resolve_image_size(checkpoint: Checkpoint, model: nn.Module, image_size: int | None) -> int:
    size = int(image_size or checkpoint.preprocess.crop)
    minimum = getattr(model, "min_image_size", 1)
    if size < minimum:
        raise ExportError(
            f"--image-size {size} is too small for AlexNet variant {checkpoint.config.variant!r} (minimum {minimum})"
        )
    return size


def preprocess_for_size(spec: PreprocessSpec, image_size: int) -> PreprocessSpec:
    """The checkpoint's preprocessing for an artifact taking `image_size` inputs: a different input
    size means a different crop, with the resize/crop ratio convention kept."""
    if image_size == spec.crop:
        return spec
    return PreprocessSpec.for_image_size(image_size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation)


def export_metadata(
    source: Source,
    *,
    fmt: str,
    batch_size: int | None,
    image_size: int,
    precision: str,
) -> ArtifactMetadata:
    """What the artifact carries: classes, preprocessing, model config, input, provenance."""
    checkpoint = source.checkpoint
    spec = preprocess_for_size(checkpoint.preprocess, image_size)
    return ArtifactMetadata(
        class_names=tuple(checkpoint.class_names),
        preprocess=spec,
        model_config=checkpoint.config.to_dict(),
        input_shape=(batch_size, 3, image_size, image_size),
        precision=precision,
        format=fmt,
        source_sha256=source.sha256,
        package_version=__version__,  # the exporter's version (the checkpoint's may be older)
        torch_version=torch.__version__,
    )


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


def trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """torch.jit.trace in eval mode, without autograd.

    TracerWarnings are silenced: the only one AlexNet raises is local_response_norm's
    `input.numel() == 0` guard (paper variant), false for every real input.
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model.eval(), example, check_trace=False)


def example_input(batch_size: int | None, image_size: int, seed: int = 0) -> torch.Tensor:
    # A dynamic-batch trace uses 2, so that no exporter specializes the batch to 1.
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size or 2, 3, image_size, image_size, generator=generator)


def weight_bytes(model: nn.Module, precision: str) -> int:
    """About what an artifact of `model` takes on disk (its weights at `precision`): the free
    space checked before writing it, since torch.jit.save aborts the process on a full disk."""
    count = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    return count * BYTES_PER_WEIGHT[precision]


def write_file(output: Path, write: Callable[[str], Any], *, expected_bytes: int | None = None) -> None:
    """`write(tmp)` beside `output`, renamed into place only when complete (runtime.outputs.atomic_write)."""
    try:
        outputs.atomic_write(output, write, expected_bytes=expected_bytes)
    except outputs.OutputError as exc:
        raise ExportError(str(exc)) from exc


def write_directory(output: Path, write: Callable[[str], Any], *, expected_bytes: int | None = None) -> None:
    """`write(tmp_dir)` builds the directory beside `output`; it replaces `output` only when complete."""
    try:
        outputs.replace_directory(output, write, expected_bytes=expected_bytes)
    except outputs.OutputError as exc:
        raise ExportError(str(exc)) from exc
