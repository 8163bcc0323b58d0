"""Checkpoint -> LiteRT model (.tflite, the TensorFlow Lite format) with litert-torch.

fp32 here; int8 is litert-torch's PT2E quantizer (full-integer: int8 weights, activations, input
and output, per-channel symmetric weights) behind the accuracy gate (export/pt2e_int8.py calls
`quantizer` and `write` below). The runtime (ai-edge-litert, torch-free) quantizes the float
input and dequantizes the logits with the tensors' own scale and zero point.

The batch is fixed: the converter folds it into the model's reshapes (resizing the input of a
converted file silently keeps the exported batch), so a file runs at the batch it was exported
with (--batch-size, default 1: what a phone app feeds) and the runtime pads to it.

Metadata: the TFLite Model.metadata entry "alexnet_deploy" (a named buffer), written by
runtime.tflite_model.add_metadata. Its weights' SHA-256 covers every buffer but the metadata ones,
so it is computed on the converted bytes and recorded in the metadata added after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from export.common import ExportError, first_line, quiet_logger, write_file
from export.torch_export import edge_ready, example_batch
from runtime import formats
from runtime.metadata import ArtifactMetadata
from runtime.tflite_model import add_metadata, buffers_sha256, read_metadata

FORMAT = formats.get("litert")
FOLD_QUANTIZE = False  # litert-torch reads the quantize/dequantize pairs around fp32 weights itself
DEFAULT_BATCH = 1


def fixed_batch(metadata: ArtifactMetadata) -> ArtifactMetadata:
    """The metadata of a .tflite: always a fixed batch (DEFAULT_BATCH unless one was asked for)."""
    batch = metadata.batch_size or DEFAULT_BATCH
    return dataclasses.replace(metadata, input_shape=(batch, *metadata.input_shape[1:]))


def export_litert(model: nn.Module, metadata: ArtifactMetadata, output: Path) -> Path:
    """fp32 `model` (eval) -> `output` (.tflite) at the metadata's fixed batch."""
    write(edge_ready(model, metadata.input_shape[2]), fixed_batch(metadata), output)
    return output


def quantizer(exclude: tuple[str, ...] = ()) -> Any:
    """litert-torch's PT2E quantizer: static int8, per-channel symmetric weights; `exclude`d modules
    ("features.0") left fp32."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class Excluding(PT2EQuantizer):
        """litert-torch 0.10 matches set_module_name's names against nn_module_stack keys cut by a
        fixed prefix ("L__self___") that torch 2.13's keys ("L__self__features.0") do not have, so a
        name never matches. Here each excluded module is entered under the name the quantizer derives
        from this graph's own keys (and under its real name, should that be fixed); a None config is
        what its annotation skips, leaving the module's ops fp32."""

        def annotate(self, model: Any) -> Any:
            for node in model.graph.nodes:
                for key, (fqn, _) in (node.meta.get("nn_module_stack") or {}).items():
                    if fqn in exclude:
                        self.module_name_config[key[len("L__self___") :].replace("_", ".")] = None
                        self.module_name_config[fqn] = None
            return super().annotate(model)

    return Excluding().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


def write(module: nn.Module, metadata: ArtifactMetadata, output: Path, *, pt2e_quantizer: Any = None) -> None:
    """Convert `module` (edge-ready fp32, or PT2E-quantized with `pt2e_quantizer`) at the metadata's
    batch and write the .tflite atomically with its metadata, the weights' SHA-256 stamped."""
    data = convert(module, metadata, pt2e_quantizer)
    stamped = dataclasses.replace(metadata, weights_sha256=buffers_sha256(data))
    data = add_metadata(data, stamped.to_json())
    if read_metadata(data) != stamped.to_json() or buffers_sha256(data) != stamped.weights_sha256:
        raise ExportError("the .tflite's metadata did not read back as written; not saved")
    write_file(output, lambda tmp: Path(tmp).write_bytes(data), expected_bytes=len(data))


def convert(module: nn.Module, metadata: ArtifactMetadata, pt2e_quantizer: Any = None) -> bytes:
    """The .tflite bytes of `module` traced at the metadata's fixed batch."""
    import litert_torch

    example = example_batch(metadata.batch_size or DEFAULT_BATCH, metadata.input_shape[2])
    options = {}
    if pt2e_quantizer is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        options["quant_config"] = QuantConfig(pt2e_quantizer=pt2e_quantizer)
    try:
        with quiet_converter():
            return bytes(litert_torch.convert(module, (example,), **options).model_content())
    except Exception as exc:  # the converter's errors come from torch.export, MLIR and flatbuffers
        raise ExportError(f"LiteRT conversion failed: {first_line(exc)}") from exc


@contextlib.contextmanager
def quiet_converter() -> Iterator[None]:
    """litert-torch prints its progress on stdout (which may carry --json) and warns about pytree APIs."""
    with (
        quiet_logger("litert_torch"),
        quiet_logger("absl"),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield
