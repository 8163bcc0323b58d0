"""The output folder of alexnet-batch: a manifest and part files, each written whole.

    DIR/alexnet-batch.json       which model, top-k and format wrote the rows (a resumed run must match)
    DIR/part-000000.parquet      rows: path, labels, indices, probabilities, error, model_sha256
    DIR/part-000001.parquet      ...

Parts are written atomically (runtime.outputs): a killed driver leaves whole parts and, at most,
a temp file the next run removes, so a resumed run reads exactly the rows that were finished.
Rows are keyed by `path`; a resumed run predicts only the names no part holds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from runtime.errors import DeployError, first_line
from runtime.fileio import open_regular
from runtime.outputs import atomic_write, dumps_json, remove_stale_temps

FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl"}  # --format -> the parts' suffix
MANIFEST = "alexnet-batch.json"
MANIFEST_BYTES = 1 << 20  # far above what the manifest holds
_PART = re.compile(r"part-(\d{6,})\.(parquet|jsonl)")
# what a resumed run must share with the run it completes
_IDENTITY_KEYS = ("model_sha256", "topk", "format", "decode")


class ResultsError(DeployError):
    """The output folder cannot be used: not a folder, unreadable, or written by another setup."""


def schema() -> Any:
    """The rows' Arrow schema (the Parquet columns; JSON Lines has the same keys)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("indices", pa.list_(pa.int64())),
            ("probabilities", pa.list_(pa.float64())),
            ("error", pa.string()),  # null when the image was predicted
            ("model_sha256", pa.string()),
        ]
    )


def rows_table(predictions: list[Any], model_sha256: str) -> Any:
    """Predictions (runtime.Prediction) -> a table of rows in `schema()`."""
    import pyarrow as pa

    columns = {
        "path": [p.source for p in predictions],
        "labels": [list(p.labels) if p.ok else None for p in predictions],
        "indices": [list(p.indices) if p.ok else None for p in predictions],
        "probabilities": [list(p.probabilities) if p.ok else None for p in predictions],
        "error": [p.error for p in predictions],
        "model_sha256": [model_sha256] * len(predictions),
    }
    return pa.table(columns, schema=schema())


def error_table(errors: dict[str, str], model_sha256: str) -> Any:
    """Rows for files that were never predicted: name -> the one-line reason."""
    import pyarrow as pa

    names = list(errors)
    nulls = [None] * len(names)
    columns = {"path": names, "labels": nulls, "indices": nulls, "probabilities": nulls}
    columns |= {"error": [errors[n] for n in names], "model_sha256": [model_sha256] * len(names)}
    return pa.table(columns, schema=schema())


def conform(table: Any) -> Any:
    """A table of result rows as Ray handed it back, in exactly `schema()` (column order and types)."""
    target = schema()
    return table.select(target.names).cast(target)


class ResultsFolder:
    """DIR: its manifest, the names its parts hold, and new parts."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self.next_part = 0

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def has_results(self) -> bool:
        """Whether DIR holds a manifest or part files (what --resume / --overwrite are about)."""
        return self.manifest_path.exists() or bool(self.part_files())

    def part_files(self) -> list[Path]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ResultsError(f"{self.path}: cannot read the output folder ({exc.strerror or exc})") from None
        return sorted(self.path / n for n in names if _PART.fullmatch(n))

    def start(self, identity: dict[str, Any]) -> None:
        """Create DIR (if it is not there) and write the manifest of a new run."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{self.path}: cannot create the output folder ({exc.strerror or exc})") from None
        atomic_write(self.manifest_path, lambda tmp: Path(tmp).write_text(dumps_json(identity)), what="manifest")

    def resume(self, identity: dict[str, Any]) -> set[str]:
        """The names already written, after checking that the run being resumed had `identity`."""
        written = self.read_manifest()
        for key in _IDENTITY_KEYS:
            if written.get(key) != identity[key]:
                raise ResultsError(
                    f"{self.path} was written with {key} {written.get(key)!r}, this run has {identity[key]!r}; "
                    "resume with the same model and options, or pass --overwrite"
                )
        done: set[str] = set()
        for part in self.part_files():
            remove_stale_temps(part)
            done.update(self._part_names(part))
        parts = self.part_files()
        self.next_part = 1 + max((int(_PART.fullmatch(p.name).group(1)) for p in parts), default=-1)  # type: ignore[union-attr]
        return done

    def read_manifest(self) -> dict[str, Any]:
        try:
            with open_regular(self.manifest_path) as handle:
                data = json.loads(handle.read(MANIFEST_BYTES + 1)[:MANIFEST_BYTES])
        except FileNotFoundError:
            raise ResultsError(f"{self.path}: no {MANIFEST} here, so nothing to resume") from None
        except (OSError, ValueError) as exc:
            raise ResultsError(f"{self.manifest_path}: cannot read it ({first_line(exc)})") from None
        if not isinstance(data, dict):
            raise ResultsError(f"{self.manifest_path}: not an alexnet-batch manifest")
        return data

    def _part_names(self, part: Path) -> list[str]:
        try:
            if part.suffix == ".parquet":
                import pyarrow.parquet as pq

                with open_regular(part) as handle:
                    return pq.read_table(handle, columns=["path"]).column("path").to_pylist()
            with open_regular(part) as handle:
                return [json.loads(line)["path"] for line in handle if line.strip()]
        except Exception as exc:  # pyarrow's and json's errors alike: one line naming the part
            raise ResultsError(f"{part}: cannot read this part of the results ({first_line(exc)})") from None

    def write_part(self, table: Any) -> Path:
        """One part file, written whole (atomic), next in number."""
        path = self.path / f"part-{self.next_part:06d}{FORMATS[self.format]}"
        self.next_part += 1
        if self.format == "parquet":
            import pyarrow.parquet as pq

            atomic_write(path, lambda tmp: pq.write_table(table, tmp), what="results part")
        else:
            lines = "".join(json.dumps(_json_row(row), allow_nan=False) + "\n" for row in table.to_pylist())
            atomic_write(path, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"), what="results part")
        return path


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """alexnet-run --json's keys (an error row has only path and error) plus the model's hash."""
    if row["error"] is not None:
        return {"path": row["path"], "error": row["error"], "model_sha256": row["model_sha256"]}
    return {key: value for key, value in row.items() if key != "error"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a results folder (tests, small runs): Parquet or JSON Lines parts alike."""
    folder = ResultsFolder(path, "parquet")
    rows: list[dict[str, Any]] = []
    for part in folder.part_files():
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(part).to_pylist()
        else:
            rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
    return rows
