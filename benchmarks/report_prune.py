"""alexnet-report --prune-artifacts (the default): once the report is written, the artifacts that no goal
recommends on any device are deleted, so that a run leaves the files to ship, not every format x
precision (a default run's artifacts are about 1 GB). --keep-all-artifacts keeps them all.

    mark(doc, enabled)                 # before the report is written: which entries go (entry["removed"])
    problems = remove(doc, artifacts, out_dir)   # after: delete them, safely

Only files this run exported are deleted (the report's entries, never the checkpoint), and only inside
its artifacts folder with no symbolic link on the way: a link, or a file reached through one, is left
alone and the report says so. Nothing is pruned when no artifact is recommended at all (nothing to ship:
the files are what there is to look at). report.json keeps every entry, the removed ones marked.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from runtime import formats

KEEP_FLAG = "--keep-all-artifacts"


def plan(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The exported entries with a file that no recommendation names (none when none is recommended)."""
    chosen = {r["label"] for r in doc["recommendations"] if r["label"]}
    if not chosen:
        return []
    return [e for e in doc["artifacts"] if e["format"] != "checkpoint" and e.get("path") and e["label"] not in chosen]


def mark(doc: dict[str, Any], enabled: bool) -> None:
    """Record in `doc` what pruning will remove: entry["removed"], and doc["pruning"]."""
    doomed = plan(doc) if enabled else []
    for entry in doomed:
        entry["removed"] = True
    doc["pruning"] = {"enabled": enabled, "keep_flag": KEEP_FLAG, "removed": [e["label"] for e in doomed]}


def artifact_files(path: Path) -> list[Path]:
    """The artifact and the files beside it that belong to it (an OpenVINO IR's .bin)."""
    fmt = formats.for_suffix(path.suffix)
    return [path, *(path.with_suffix(s) for s in (fmt.companions if fmt else ()))]


def _refusal(path: Path, root: Path, out_dir: Path) -> str | None:
    """Why `path` must not be deleted, or None: it lies in `root` (inside `out_dir`), reached through no link."""
    try:
        relative = path.absolute().relative_to(out_dir.absolute())
        root.absolute().relative_to(out_dir.absolute())
        path.absolute().relative_to(root.absolute())
    except ValueError:
        return f"{path} is not inside {root}"
    current = out_dir.absolute()
    for part in relative.parts:
        current = current / part
        if part == ".." or current.is_symlink():
            return f"{current} is a symbolic link or leads out of {out_dir}"
    return None


def remove(doc: dict[str, Any], root: Path, out_dir: Path) -> list[str]:
    """Delete the files of the entries `mark` marked; the problems, one line each. An entry whose files
    could not all be deleted is marked not removed again, with the reason (entry["remove_error"])."""
    problems = []
    for entry in (e for e in doc["artifacts"] if e.get("removed")):
        files = [f for f in artifact_files(Path(entry["path"])) if f.exists() or f.is_symlink()]
        refusals = [why for why in (_refusal(f, root, out_dir) for f in files) if why]
        try:
            if refusals:
                raise OSError("; ".join(refusals))
            for file in files:
                shutil.rmtree(file) if file.is_dir() else file.unlink()
        except OSError as exc:
            entry["removed"], entry["remove_error"] = False, str(exc)
            problems.append(f"{entry['label']}: not removed: {exc}")
    doc["pruning"]["removed"] = [e["label"] for e in doc["artifacts"] if e.get("removed")]
    return problems
