"""A training run's --out folder: checked before any data is built, made at the first save (so a run
killed before it leaves nothing), and removed again, level by level, if the run fails with it empty."""

from __future__ import annotations

import os
from pathlib import Path

from alexnet.recipe import TrainError


def check_creatable(out: Path, missing: list[Path]) -> None:
    """--out is a folder, or can be made inside its nearest existing parent: checked before any data is built."""
    existing = out.parents[len(missing) - 1] if missing else out
    if not existing.is_dir():
        raise TrainError(f"cannot create {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"cannot create {out}: {existing} is not writable")


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot create {out}: {exc.strerror or exc}") from exc


def remove_if_empty(created: list[Path]) -> None:
    """Remove the folders a failed run made, deepest first, while they are empty (os.rmdir refuses otherwise)."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return
