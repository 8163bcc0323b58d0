"""Export a checkpoint to TorchScript, ONNX, OpenVINO IR, Core ML, ExecuTorch or LiteRT (one artifact
per call), or a Triton repository.

    from export import export_artifact
    export_artifact("runs/best.pth", "onnx")              # -> runs/best.onnx, dynamic batch, opset 18
    export_artifact("runs/best.pth", "openvino")          # -> runs/best.xml + runs/best.bin (IR, fp32)
    export_artifact("runs/best.pth", "coreml", precision="fp16", coreml_input="image")
    export_artifact("runs/best.pth", "executorch")        # -> runs/best.pte (XNNPACK, batch 1..15 per call)
    export_artifact("runs/best.pth", "litert", precision="int8")  # -> runs/best.tflite (fixed batch 1)
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
from export.source import Source, as_source, source_path
from export.validate import ValidationResult, validate_artifact
from runtime import formats
from runtime.metadata import ArtifactMetadata

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "FORMATS",
    "PRECISIONS",
    "COREML_INPUTS",
    "ExportError",
    "QuantizeOptions",
    "Source",
    "ValidationResult",
    "export_artifact",
    "plan_output",
    "write_artifact",
    "validate_artifact",
]


def export_artifact(
    checkpoint: str | os.PathLike | Source,
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
    """Write `checkpoint` (a path, or a `Source` already read) as a `fmt` artifact; return its path.

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
    options = {"batch_size": batch_size, "precision": precision, "coreml_input": coreml_input}
    place = plan_output(checkpoint, fmt, output, tag=tag, triton_name=triton_name, **options)
    settings = {"opset": opset, "image_size": image_size, "quantize": quantize, "echo": echo}
    return write_artifact(as_source(checkpoint), fmt, place, triton_name=triton_name, **options, **settings)


def plan_output(
    checkpoint: str | os.PathLike | Source,
    fmt: str,
    output: str | os.PathLike | None = None,
    *,
    tag: str | None = None,
    triton_name: str = "alexnet",
    batch_size: int | None = None,
    precision: str = "fp32",
    coreml_input: str = "image",
) -> Path:
    """Where `fmt` will be written (for triton: the repository root), once the options fit together
    and that place can be written (ExportError otherwise), before the checkpoint is even read."""
    from export import common, to_triton

    path = source_path(checkpoint)
    if fmt == "triton":
        common.check_options("onnx", batch_size, precision, "image")  # the ONNX export's option errors
        repo = to_triton.resolve_repository(path, output, tag)
        to_triton.check_repository_output(repo, triton_name)
        return repo
    common.check_options(fmt, batch_size, precision, coreml_input)
    place = common.resolve_output(path, fmt, output, tag)
    common.check_output(place, fmt, path)
    return place


def write_artifact(
    source: Source,
    fmt: str,
    output: Path,
    *,
    batch_size: int | None = None,
    opset: int = 18,
    precision: str = "fp32",
    image_size: int | None = None,
    coreml_input: str = "image",
    quantize: QuantizeOptions | None = None,
    echo: Callable[[str], None] | None = None,
    triton_name: str = "alexnet",
) -> Path:
    """Export `source` to `output`, a place `plan_output` returned (checked there, not again here)."""
    from export import common

    if fmt == "triton":
        from export.to_triton import write_repository

        onnx_options = {"opset": opset, "image_size": image_size, "quantize": quantize, "echo": echo}
        return write_repository(
            source, output, name=triton_name, precision=precision, batch_size=batch_size, **onnx_options
        )
    model = source.build_model()
    size = common.resolve_image_size(source.checkpoint, model, image_size)
    # A Core ML image input takes one image at a time: its metadata says batch 1.
    batch = 1 if fmt == "coreml" and coreml_input == "image" else batch_size
    metadata = common.export_metadata(source, fmt=fmt, batch_size=batch, image_size=size, precision=precision)
    training = source.checkpoint.training
    if fmt == "coreml":
        from export.to_coreml import export_coreml

        return export_coreml(
            model, metadata, output, coreml_input=coreml_input, quantize=quantize, training=training, echo=echo
        )
    if fmt == "openvino":
        return _export_openvino(model, metadata, output, precision, quantize, training, opset=opset, echo=echo)
    if formats.get(fmt).torch_export:
        return _export_edge(fmt, model, metadata, output, quantize, training, echo=echo)
    if fmt == "onnx" and precision == "int8":
        from export.to_onnx_int8 import export_int8_onnx

        options = quantize or QuantizeOptions()
        kwargs = {"echo": echo} if echo else {}
        return export_int8_onnx(model, metadata, output, options=options, training=training, opset=opset, **kwargs)
    return _export_traced(fmt, common.for_precision(model, precision), metadata, output, opset=opset)


def _export_openvino(
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    precision: str,
    quantize: QuantizeOptions | None,
    training: dict | None,
    *,
    opset: int,
    echo: Callable[[str], None] | None,
) -> Path:
    """An OpenVINO IR: fp32 converted from the ONNX export, or int8 quantized by NNCF behind the gate."""
    if precision == "int8":
        from export.to_openvino_int8 import export_int8_openvino

        options = quantize or QuantizeOptions()
        kwargs = {"echo": echo} if echo else {}
        return export_int8_openvino(model, metadata, output, options=options, training=training, opset=opset, **kwargs)
    from export.to_openvino import export_openvino

    return export_openvino(model, metadata, output, opset=opset, batch_size=metadata.input_shape[0])


def _export_edge(
    fmt: str,
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    quantize: QuantizeOptions | None,
    training: dict | None,
    *,
    echo: Callable[[str], None] | None,
) -> Path:
    """An ExecuTorch program or a LiteRT model (export/torch_export.py is their shared front end):
    fp32 lowered as is, int8 PT2E-quantized behind the gate."""
    import importlib

    from export.torch_export import quiet_edge_imports

    writer = importlib.import_module(f"export.to_{fmt}")
    with quiet_edge_imports():
        if metadata.precision == "int8":
            from export.pt2e_int8 import export_int8_pt2e

            kwargs = {"echo": echo} if echo else {}
            options = quantize or QuantizeOptions()
            return export_int8_pt2e(writer, model, metadata, output, options=options, training=training, **kwargs)
        return getattr(writer, f"export_{fmt}")(model, metadata, output)


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
