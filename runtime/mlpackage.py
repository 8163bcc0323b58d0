"""A Core ML package's files, found from its Manifest.json and confined to the package.

A .mlpackage is a folder: Manifest.json names its items by paths relative to <package>/Data
(the root model spec, `model.mlmodel`, and the `weights` folder holding weight.bin). The manifest
is untrusted: each path is resolved (symlinks followed) and refused unless it stays inside the
package and is a regular file (the weights: a folder of regular files), the way onnxruntime
confines an ONNX model's external data to its folder. A FIFO would block the read forever.

Read here, not by coremltools: its package class (libmodelpackage) rewrites Manifest.json each
time one is dropped, twice per coremltools.models.MLModel(path), so loading would modify the
artifact (and fail on a read-only mount). Torch-free; coremltools only to parse the spec.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from runtime.backends import ModelLoadError
from runtime.errors import first_line, quiet_logger
from runtime.fileio import open_regular, special_file_kind
from runtime.preprocess import short_repr

MANIFEST = "Manifest.json"
DATA_DIR = "Data"
WEIGHTS_NAME, AUTHOR = "weights", "com.apple.CoreML"
MAX_MANIFEST_BYTES = 1 << 20  # coremltools writes well under 1 kB
MAX_WEIGHT_FILES = 1_000  # coremltools writes one (weight.bin)


@dataclass(frozen=True)
class PackageFiles:
    """`spec`: the root model file; `weights`: the weights folder or None (a .mlmodel, or a package
    whose model keeps its weights in the spec), and `weight_files`, the files in it, by name. All
    resolved, checked to be inside the package at `path` and regular (the folder: a folder)."""

    path: Path  # as given, for messages
    spec: Path
    weights: Path | None
    weight_files: tuple[Path, ...] = ()

    def read_spec(self) -> bytes:
        """The root model file's bytes (opened without blocking: package_files checked it is regular)."""
        try:
            with open_regular(self.spec) as handle:
                return handle.read()
        except OSError as exc:
            raise ModelLoadError(f"cannot read {self.spec} of {self.path}: {exc.strerror or exc}") from exc


def package_files(path: str | os.PathLike) -> PackageFiles:
    """The files of the package (or .mlmodel file) at `path`; a one-line ModelLoadError for an
    item outside the package, missing, or not a regular file (a folder, for the weights)."""
    path = Path(path)
    if not path.is_dir():
        # A .mlmodel named by the user: followed wherever it leads, like any model file given.
        return PackageFiles(path, _confined(None, path, path, "model file", "file"), None)
    root = _package_root(path)
    entries, root_id = _read_manifest(root, path)
    spec_entry = entries.get(root_id)
    if not isinstance(spec_entry, dict):
        raise ModelLoadError(f"{path}: its {MANIFEST} names root model {short_repr(root_id)}, which it does not list")
    spec = _item(root, spec_entry, path, "root model", "file")
    weights = [e for e in entries.values() if isinstance(e, dict) and _is_weights(e)]
    if not weights:
        return PackageFiles(path, spec, None)
    folder = _item(root, weights[0], path, "weights folder", "folder")
    return PackageFiles(path, spec, folder, _weight_files(root, folder, path))


def parse_spec(data: bytes, source: str | os.PathLike) -> Any:
    """The Core ML Model message in `data` (coremltools' protobuf classes, imported quietly)."""
    with warnings.catch_warnings(), quiet_logger("coremltools"):
        warnings.simplefilter("ignore")
        from coremltools.proto import Model_pb2
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError; the upb build raises it bare
        raise ModelLoadError(f"{source} is not a Core ML model spec: {first_line(exc)}") from exc
    return spec


def _weight_files(root: Path, folder: Path, path: Path) -> tuple[Path, ...]:
    """Every entry of the weights folder: coremltools' loader opens any of them the spec names."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise ModelLoadError(f"cannot list the weights of {path}: {exc.strerror or exc}") from exc
    if len(names) > MAX_WEIGHT_FILES:
        raise ModelLoadError(f"{path} holds {len(names):,} weight files, more than {MAX_WEIGHT_FILES:,}")
    return tuple(_confined(root, folder / name, path, f"weight file {short_repr(name)}", "file") for name in names)


def _package_root(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ModelLoadError(f"cannot resolve {path}: {exc}") from exc


def _is_weights(entry: dict) -> bool:
    # How coremltools finds the weights (utils._try_get_weights_dir_path): by name and author.
    return entry.get("name") == WEIGHTS_NAME and entry.get("author") == AUTHOR


def _read_manifest(root: Path, path: Path) -> tuple[dict, Any]:
    if not os.path.lexists(root / MANIFEST):
        raise ModelLoadError(f"cannot read {path} as a Core ML package: it has no {MANIFEST}")
    manifest = _confined(root, root / MANIFEST, path, MANIFEST, "file")
    try:
        with open_regular(manifest) as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(text) > MAX_MANIFEST_BYTES:
            raise ModelLoadError(f"{path}: its {MANIFEST} is larger than {MAX_MANIFEST_BYTES:,} bytes")
        data = json.loads(text)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {MANIFEST} of {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"{path}: its {MANIFEST} is not valid JSON: {first_line(exc)}") from exc
    entries = data.get("itemInfoEntries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ModelLoadError(f"{path}: its {MANIFEST} has no itemInfoEntries object; not a Core ML package")
    return entries, data.get("rootModelIdentifier")


def _item(root: Path, entry: dict, path: Path, what: str, kind: str) -> Path:
    relative = entry.get("path")
    if not isinstance(relative, str) or not relative or "\0" in relative or PurePath(relative).is_absolute():
        raise ModelLoadError(f"{path}: its {MANIFEST} gives the {what} the path {short_repr(relative)}; not read")
    return _confined(root, root / DATA_DIR / relative, path, f"{what} {short_repr(relative)}", kind)


def _confined(root: Path | None, candidate: Path, path: Path, what: str, kind: str) -> Path:
    """`candidate` resolved; refused unless inside `root` (None: anywhere) and a regular file
    (kind "file") or a folder."""
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: cannot resolve its {what}: {exc}") from exc
    if root is not None and resolved != root and root not in resolved.parents:
        raise ModelLoadError(f"{path}: its {what} leads outside the package; not read")
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: its {what} does not exist") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read its {what}: {exc.strerror or exc}") from exc
    found = special_file_kind(mode)
    wanted = None if kind == "file" else "a directory"
    if found != wanted:
        raise ModelLoadError(
            f"{path}: its {what} is {found or 'a regular file'}, not {'a regular file' if wanted is None else 'a folder'}"
            f"; not read"
        )
    return resolved


__all__ = ["PackageFiles", "package_files", "parse_spec"]
