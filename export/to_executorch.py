"""Checkpoint -> ExecuTorch program (.pte): torch.export -> XNNPACK delegate -> to_executorch().

fp32 here; int8 is PT2E static quantization (XNNPACKQuantizer, per-channel symmetric weights)
behind the accuracy gate (export/pt2e_int8.py calls `quantizer` and `write` below).

The batch is dynamic, 1..15 images per call (runtime/formats.py `max_batch`: ExecuTorch's memory
plan refuses 16 whatever bound torch.export is given), or fixed with --batch-size N <= 15.

Metadata: a program has no free-form field, so the alexnet-deploy JSON is a constant method,
`alexnet_deploy_metadata`, which the Python and C++ runtimes can call. The weights (the XNNPACK
blobs and constants) are in the file's data segments, outside the program, and their SHA-256
(runtime/integrity.py pte_sha256) is in that JSON: the program is lowered with a placeholder
hash of the same length, the segments hashed, and the real hash spliced over the placeholder.
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
from export.torch_export import edge_ready, example_batch, export_program, outside_modules
from runtime import formats
from runtime.integrity import pte_sha256
from runtime.metadata import ArtifactMetadata

FORMAT = formats.get("executorch")
METADATA_METHOD = "alexnet_deploy_metadata"
PLACEHOLDER_SHA256 = "0" * 64
FOLD_QUANTIZE = True  # XNNPACK takes int8 weights folded into constants


def export_executorch(model: nn.Module, metadata: ArtifactMetadata, output: Path) -> Path:
    """fp32 `model` (eval) -> `output` (.pte), the batch as metadata.input_shape[0] says (None: dynamic)."""
    size = metadata.input_shape[2]
    metadata = with_batch_limit(metadata)
    write(edge_ready(model, size), metadata, output)
    return output


def with_batch_limit(metadata: ArtifactMetadata) -> ArtifactMetadata:
    """A dynamic-batch program records how many images it takes per call."""
    return dataclasses.replace(metadata, max_batch=FORMAT.max_batch if metadata.batch_size is None else None)


def quantizer(exclude: tuple[str, ...] = ()) -> Any:
    """XNNPACK's PT2E quantizer: int8 per-channel symmetric weights, static int8 activations;
    the `exclude`d modules ("features.0") left fp32."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    chosen = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if exclude:  # XNNPACKQuantizer refuses set_module_name(name, None); its node filter does the same
        chosen.set_filter_function(outside_modules(exclude))
    return chosen


def write(module: nn.Module, metadata: ArtifactMetadata, output: Path) -> None:
    """Lower `module` (edge-ready fp32, or PT2E-quantized) with `metadata` and write the .pte atomically,
    its weights' SHA-256 stamped; checked by reading the file back."""
    data = lower(module, dataclasses.replace(metadata, weights_sha256=PLACEHOLDER_SHA256))

    def save(tmp: str) -> None:
        Path(tmp).write_bytes(data)
        digest = pte_sha256(tmp)
        Path(tmp).write_bytes(splice_sha256(data, digest))
        if pte_sha256(tmp) != digest:
            raise ExportError("the .pte's data segments changed while its hash was recorded; not saved")

    write_file(output, save, expected_bytes=len(data))


def lower(module: nn.Module, metadata: ArtifactMetadata) -> bytes:
    """The .pte bytes of `module`: exported (batch as the metadata says), XNNPACK-delegated, serialized."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    batch, size = metadata.batch_size, metadata.input_shape[2]
    limit = FORMAT.max_batch if batch is None else None
    program = export_program(module, example_batch(batch, size), dynamic=batch is None, max_batch=limit)
    try:
        with quiet_executorch():
            edge = to_edge_transform_and_lower(
                program, partitioner=[XnnpackPartitioner()], constant_methods={METADATA_METHOD: metadata.to_json()}
            )
            return bytes(edge.to_executorch().buffer)
    except Exception as exc:  # lowering errors come from many layers (exir, the partitioner, flatc)
        raise ExportError(f"ExecuTorch lowering failed: {first_line(exc)}") from exc


def splice_sha256(data: bytes, digest: str) -> bytes:
    """`data` with the placeholder hash in its metadata replaced by `digest` (same length, so the
    program's offsets stay valid); exactly one placeholder must be there."""
    field = f'"weights_sha256": "{PLACEHOLDER_SHA256}"'.encode()
    if data.count(field) != 1:
        raise ExportError(f"the lowered program holds {data.count(field)} metadata hash placeholders, not one")
    return data.replace(field, f'"weights_sha256": "{digest}"'.encode())


@contextlib.contextmanager
def quiet_executorch() -> Iterator[None]:
    """exir warns about deprecated pytree APIs and prints pass statistics; neither is the user's."""
    with quiet_logger("executorch"), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
