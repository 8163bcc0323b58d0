"""The checkpoint an export is made from, read and verified once.

`alexnet-export --format all --precisions fp32,int8` writes up to eight artifacts and validates
each against PyTorch; a 58M-parameter checkpoint is 230 MB, so reading, unpickling (weights-only)
and hashing it once per artifact cost seconds each. A `Source` holds what all of them need: the
verified checkpoint and its SHA-256 (the artifacts' provenance). `export_artifact` and
`validate_artifact` take a Source or a path (a path is opened here, once per call).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from alexnet.checkpoint import Checkpoint, load_checkpoint
from runtime.fileio import file_sha256


@dataclass(frozen=True)
class Source:
    """A checkpoint file, read and verified (`load_checkpoint`), with the hash of its bytes."""

    path: Path
    checkpoint: Checkpoint
    sha256: str

    @classmethod
    def open(cls, path: str | os.PathLike) -> Source:
        """Read `path` (CheckpointError if unreadable or not a checkpoint) and hash it."""
        path = Path(path)
        checkpoint = load_checkpoint(path, map_location="cpu")
        return cls(path, checkpoint, file_sha256(path))

    def build_model(self) -> nn.Module:
        """A fresh eval-mode fp32 model on CPU: each artifact gets its own (an fp16 export casts
        its model in place, an int8 one inserts observers)."""
        return self.checkpoint.build_model()


def source_path(checkpoint: str | os.PathLike | Source) -> Path:
    """Where the checkpoint is, without reading it (output names derive from it)."""
    return checkpoint.path if isinstance(checkpoint, Source) else Path(checkpoint)


def as_source(checkpoint: str | os.PathLike | Source) -> Source:
    return checkpoint if isinstance(checkpoint, Source) else Source.open(checkpoint)
