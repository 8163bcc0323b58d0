"""Checkpoint -> ONNX with the dynamo exporter: one self-contained file, checked, metadata in metadata_props."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.common import ExportError, first_line, quiet_logger, weight_bytes, write_file
from runtime.integrity import onnx_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    metadata: ArtifactMetadata,
    output: Path,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    weights_hash: bool = True,
) -> Path:
    """Export `model` (input `example`, (N, 3, H, W)) to `output`; batch dimension dynamic unless fixed.
    weights_hash: record the weights' SHA-256 (False for an intermediate that is changed further:
    a hash of the graph before int8 quantization would be carried into the quantized models)."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ExportError(f"opset {opset} is newer than the installed onnx {onnx.__version__} knows (up to {newest})")
    proto = _convert(model, example, opset, dynamic_batch)
    _check_opset(proto, opset)
    proto.producer_name = "alexnet-deploy"
    proto.doc_string = f"AlexNet ({metadata.model_config.get('variant', '?')}), {metadata.num_classes} classes"
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()

    write_checked(
        proto, output, "the exported ONNX model", weight_bytes(model, metadata.precision), weights_hash=weights_hash
    )
    return output


def write_checked(proto: Any, output: Path, what: str, expected_bytes: int, *, weights_hash: bool = True) -> None:
    """Save `proto` (an onnx.ModelProto) as one self-contained file at `output`, atomically, after
    onnx.checker's full check of what was written (a failure leaves nothing behind). Its metadata
    gets the weights' SHA-256 (runtime/integrity.py), checked against the file written."""
    import onnx

    digest = stamp_weights_sha256(proto) if weights_hash else None

    def write(tmp: str) -> None:
        onnx.save_model(proto, tmp, save_as_external_data=False)
        # The runtime's own reading of the file must agree (a device given as -o is written through).
        if digest is not None and os.path.isfile(tmp) and onnx_sha256(tmp) != digest:
            raise ExportError(f"{what}: the weights written do not hash to what was recorded; not saved")
        try:
            onnx.checker.check_model(tmp, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(f"{what} fails onnx.checker: {first_line(exc)}") from exc

    write_file(output, write, expected_bytes=expected_bytes)


def stamp_weights_sha256(proto: Any) -> str:
    """Record the SHA-256 of `proto`'s graph (which holds the initializers) in its alexnet-deploy
    metadata, the last change before saving; returns it. The metadata is outside the graph, and
    ONNX has no map fields, so the graph serializes here to the very bytes the file will hold."""
    entries = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    if len(entries) != 1:
        raise ExportError(f"the ONNX model has {len(entries)} {METADATA_KEY} metadata entries, not one")
    digest = hashlib.sha256(proto.graph.SerializeToString()).hexdigest()
    metadata = ArtifactMetadata.from_json(entries[0].value)
    entries[0].value = dataclasses.replace(metadata, weights_sha256=digest).to_json()
    return digest


def _convert(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> Any:
    """The dynamo exporter's ModelProto of `model`, the batch dimension named and free when dynamic."""
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        # The exporter reports its progress on stdout and warns about untested versions; keep the CLI quiet.
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            quiet_logger("torch.onnx"),
            quiet_logger("onnxscript"),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(),
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter wraps everything in its own error classes
        raise ExportError(f"ONNX export (opset {opset}) failed: {first_line(exc)}") from exc
    return program.model_proto


def _check_opset(proto: Any, opset: int) -> None:
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        # The exporter writes opset 18+ and down-converts on request; when that fails it keeps
        # its own opset without raising, which would silently ignore --opset.
        raise ExportError(
            f"the ONNX exporter could not produce opset {opset} (it wrote opset {written}); "
            f"use --opset {max(written or 18, 18)} or newer"
        )
