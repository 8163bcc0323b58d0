"""Checkpoint -> TorchScript: traced in eval mode, frozen, metadata in `_extra_files`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from export.common import ExportError, first_line, trace, weight_bytes, write_file
from runtime.backends.torchscript_backend import EXTRA_FILE  # where the runtime reads the metadata
from runtime.metadata import ArtifactMetadata


def export_torchscript(model: nn.Module, example: torch.Tensor, metadata: ArtifactMetadata, output: Path) -> Path:
    """Trace `model` on `example` (N, 3, H, W), freeze it and save it atomically to `output`.

    Tracing records the batch as a free dimension (flatten keeps dim 0), so one archive
    serves any batch; a fixed batch size is recorded in the metadata only.
    """
    try:
        traced = trace(model, example)
        # freeze inlines the weights as constants and folds what it can: no attributes left to mutate.
        frozen = torch.jit.freeze(traced)
    except RuntimeError as exc:
        raise ExportError(f"TorchScript tracing failed: {first_line(exc)}") from exc
    extra = {EXTRA_FILE: metadata.to_json()}
    write_file(
        output,
        lambda tmp: torch.jit.save(frozen, tmp, _extra_files=extra),
        expected_bytes=weight_bytes(model, metadata.precision),
    )
    return output
