"""Export a checkpoint to TorchScript, ONNX or Core ML (one artifact per call), or a Triton model repository.

    from export import export_artifact
    export_artifact("runs/best.pth", "onnx")              # -> runs/best.onnx, dynamic batch, opset 18
    export_artifact("runs/best.pth", "coreml", precision="fp16", coreml_input="image")
    export_artifact("runs/best.pth", "triton", "repo")    # -> repo/alexnet/{config.pbtxt,1/model.onnx,labels.txt}
    validate_artifact("runs/best.onnx", "runs/best.pth").passed  # vs PyTorch, as the CLI does

Every artifact carries the alexnet-deploy metadata (class names, preprocessing, input shape),
so `runtime.load(artifact)` needs nothing else. Expected failures raise `ExportError`
(or `CheckpointError`), both `runtime.errors.DeployError`, with one-line messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from export.common import COREML_INPUTS, FORMATS, PRECISIONS, ExportError
from export.quantize import QuantizeOptions
from export.validate import ValidationResult, validate_artifact
from runtime.metadata import ArtifactMetadata

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FORMATS",
    "PRECISIONS",
    "COREML_INPUTS",
    "ExportError",
    "QuantizeOptions",
    "ValidationResult",
    "export_artifact",
    "validate_artifact",
]


def export_artifact(
    checkpoint: str | os.PathLike,
    fmt: str,
    output: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
    opset: int = 18,
    precision: str = "fp32",
    image_size: int | None = None,
    coreml_input: str = "image",
    quantize: QuantizeOptions | None = None,
    echo: Callable[[str], None] | None = None,
    tag: str | None = None,
    triton_name: str = "alexnet",
) -> Path:
    """Write `checkpoint` as a `fmt` artifact and return its path.

    batch_size: None for a dynamic batch (Core ML image input is always batch 1).
    image_size: None for the checkpoint's crop size. output: a path, or a directory to write
    into; default beside the checkpoint (.pt, .onnx, .mlpackage), same stem, plus "-<tag>"
    when a tag is given (the CLI tags int8: best-int8.onnx). The artifact
    appears only when complete. precision "int8" (ONNX) calibrates and gates as `quantize`
    says (default QuantizeOptions(): the checkpoint's own training data); int8 Core ML is gated
    on the same held-out images by the Core ML reference evaluator; `echo` gets their progress
    lines (default: stderr).

    fmt "triton" (not one of FORMATS: a repository, not one file): output is the repository root
    (default runs/best-triton/), the model is `triton_name` in it, made by the ONNX export above
    (export/to_triton.py); the model's folder is returned.
    """
    from export import common

    if fmt == "triton":
        from export.to_triton import export_triton

        onnx_options = {"opset": opset, "image_size": image_size, "quantize": quantize, "echo": echo}
        return export_triton(
            checkpoint, output, name=triton_name, tag=tag, precision=precision, batch_size=batch_size, **onnx_options
        )
    common.check_options(fmt, batch_size, precision, coreml_input)
    output = common.resolve_output(checkpoint, fmt, output, tag)
    common.check_output(output, fmt, checkpoint)
    ckpt, model = common.load_model(checkpoint)
    size = common.resolve_image_size(ckpt, model, image_size)
    # A Core ML image input takes one image at a time: its metadata says batch 1.
    batch = 1 if fmt == "coreml" and coreml_input == "image" else batch_size
    metadata = common.export_metadata(checkpoint, ckpt, fmt=fmt, batch_size=batch, image_size=size, precision=precision)
    if fmt == "coreml":
        from export.to_coreml import export_coreml

        return export_coreml(
            model, metadata, output, coreml_input=coreml_input, quantize=quantize, training=ckpt.training, echo=echo
        )
    if fmt == "onnx" and precision == "int8":
        from export.to_onnx_int8 import export_int8_onnx

        options = quantize or QuantizeOptions()
        kwargs = {"echo": echo} if echo else {}
        return export_int8_onnx(model, metadata, output, options=options, training=ckpt.training, opset=opset, **kwargs)
    return _export_traced(fmt, common.for_precision(model, precision), metadata, output, opset=opset)


def _export_traced(fmt: str, module: nn.Module, metadata: ArtifactMetadata, output: Path, *, opset: int) -> Path:
    """TorchScript or fp32/fp16 ONNX: both trace the model on an example batch of the artifact's input."""
    from export import common

    batch_size, _, size, _ = metadata.input_shape
    example = common.example_input(batch_size, size)
    if fmt == "torchscript":
        from export.to_torchscript import export_torchscript

        return export_torchscript(module, example, metadata, output)
    from export.to_onnx import export_onnx

    return export_onnx(module, example, metadata, output, opset=opset, dynamic_batch=batch_size is None)
