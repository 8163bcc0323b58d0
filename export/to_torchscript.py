"""Checkpoint -> TorchScript: traced in eval mode, frozen, metadata in `_extra_files`."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import torch
from torch import nn

from export.common import ExportError, first_line, trace, weight_bytes, write_file
from runtime.backends.torchscript_backend import EXTRA_FILE  # where the runtime reads the metadata
from runtime.integrity import torchscript_archive_sha256, torchscript_sha256
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

    def write(tmp: str) -> None:
        # The hash is of the archive's tensor entries (runtime/integrity.py), known once saved:
        # saved and hashed, then saved again with the hash in the metadata (the extra file, not hashed).
        digest = _saved_digest(frozen, metadata, tmp)
        stamped = dataclasses.replace(metadata, weights_sha256=digest)
        torch.jit.save(frozen, tmp, _extra_files={EXTRA_FILE: stamped.to_json()})
        if os.path.isfile(tmp) and torchscript_sha256(tmp) != digest:
            raise ExportError("TorchScript saved different tensor bytes twice; the weights hash would not hold")

    write_file(output, write, expected_bytes=weight_bytes(model, metadata.precision))
    return output


def _saved_digest(frozen: torch.jit.ScriptModule, metadata: ArtifactMetadata, tmp: str) -> str:
    """The weights digest of `frozen` as torch.jit.save writes it: saved to `tmp` and read back, or,
    where `tmp` is a device written through (-o /dev/null) and cannot be read back, saved to memory."""
    extra = {EXTRA_FILE: metadata.to_json()}
    if os.path.exists(tmp) and not os.path.isfile(tmp):
        buffer = io.BytesIO()
        torch.jit.save(frozen, buffer, _extra_files=extra)
        return torchscript_archive_sha256(buffer)
    torch.jit.save(frozen, tmp, _extra_files=extra)
    return torchscript_sha256(tmp)
