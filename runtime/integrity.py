"""Integrity at load: the SHA-256 of an artifact's weights, recorded at export in its metadata
(`weights_sha256`) and checked by runtime.load, so a copy whose weights changed (bit rot, a
truncated or tampered copy) is refused instead of predicting slightly wrong: a small change stays
under fp16 noise, where comparing predictions cannot see it.

Integrity, not signing: the hash sits in the same file as the weights, so whoever can rewrite
the weights can rewrite the hash. What is hashed, per format (one function each in DIGESTS; a
format added later plugs in its own, and its exporter stamps what it returns):

- onnx: every ModelProto.graph record (field 7, which holds the initializers; metadata_props, where
  the hash itself is, is outside it), then each external-data file the graph's initializers name,
  resolved inside the model's folder. The exporter hashes graph.SerializeToString() (ONNX has no
  map fields, so that is the bytes written) and checks the written file.
- coreml: the root model spec's top-level records except specificationVersion and description
  (the metadata is in the description; macOS may lower the version on save), then every file in
  the weights folder (weight.bin) with its name; the files are found and confined by
  runtime.mlpackage. The exporter stamps the saved package's digest, splicing the new description
  into the saved spec (export/to_coreml.py), so the hashed records keep their exact bytes.
- openvino: the IR's .bin, whole (every constant of the graph is a range of it; the metadata is
  in the .xml), found and confined by runtime.openvino_ir. The exporter saves, hashes the .bin,
  then saves again with the hash in rt_info and checks that the .bin did not change.
- litert: every buffer of the .tflite flatbuffer (inline or stored by offset outside it), in order,
  each with its length, except the buffers Model.metadata names (ours is one of them) and empty
  ones (runtime/tflite_model.py). The exporter hashes the converter's bytes, then adds the metadata
  entry (a re-serialization that keeps every hashed buffer's bytes). The graph itself (ops, shapes,
  quantization scales) is not hashed, as OpenVINO's .xml is not.
- torchscript: the archive's tensor entries (constants/N, data/N) with their names; the metadata is
  the extra file beside them. zipfile also checks each entry's CRC-32 as it reads.
- executorch: the program's segments (delegate blobs, constant data), from the extended header's
  segment_base_offset to the end of the file (runtime.pte_file). The metadata is in the program,
  outside the segments; the exporter lowers with a placeholder hash of the same length and splices
  the real one in.

The bytes are read once more, after the engine loaded them (from the page cache, at disk speed:
about a second per GB); `verify=False` (alexnet-run --no-verify) skips it for trusted, read-only storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

from runtime.backends import ModelLoadError
from runtime.errors import first_line
from runtime.fileio import open_regular, update_digest
from runtime.metadata import ArtifactMetadata
from runtime.mlpackage import package_files
from runtime.preprocess import short_repr
from runtime.protowire import LEN, WireError, fields
from runtime.pte_file import segments_range
from runtime.tflite_model import tflite_sha256

_BLOCK = 1 << 20
ONNX_GRAPH = 7  # ModelProto.graph
ONNX_INITIALIZER, ONNX_SPARSE_INITIALIZER = 5, 15  # GraphProto
ONNX_SPARSE_PARTS = (1, 2)  # SparseTensorProto.values, .indices (TensorProtos)
ONNX_EXTERNAL_DATA = 13  # TensorProto.external_data: StringStringEntryProto {key = 1, value = 2}
COREML_VERSION, COREML_DESCRIPTION = 1, 2  # Model.specificationVersion, Model.description: not hashed
TORCHSCRIPT_TENSOR_DIRS = ("constants", "data")


class IntegrityError(ModelLoadError):
    """The artifact's weights are not what its metadata says they were at export."""


@contextlib.contextmanager
def mapped(path: str | os.PathLike) -> Iterator[Any]:
    """The regular file at `path` as a read-only buffer (memory-mapped: a large model is not copied)."""
    with open_regular(path) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            yield b""  # mmap refuses an empty file
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield view


def onnx_sha256(path: str | os.PathLike) -> str:
    path = Path(path)
    digest, locations = hashlib.sha256(), []
    with mapped(path) as data:
        for field in fields(data):
            if field.number == ONNX_GRAPH and field.wire_type == LEN:
                with memoryview(data) as view:  # no copy of a large graph; released before the map closes
                    digest.update(view[field.value_start : field.end])
                locations += _external_locations(data, field.value_start, field.end)
    for location in dict.fromkeys(locations):  # each file once, in the order first named
        update_digest(digest, _external_file(path, location))
    return digest.hexdigest()


def _external_locations(data: Any, start: int, end: int) -> list[str]:
    """The `location` of each external-data initializer of the GraphProto in data[start:end]."""
    tensors = []
    for field in fields(data, start, end):
        if field.number == ONNX_INITIALIZER and field.wire_type == LEN:
            tensors.append(field)
        elif field.number == ONNX_SPARSE_INITIALIZER and field.wire_type == LEN:
            tensors += [f for f in fields(data, field.value_start, field.end) if f.number in ONNX_SPARSE_PARTS]
    found = []
    for tensor in tensors:
        for entry in fields(data, tensor.value_start, tensor.end):
            if entry.number == ONNX_EXTERNAL_DATA and entry.wire_type == LEN:
                pairs = {
                    f.number: bytes(data[f.value_start : f.end]) for f in fields(data, entry.value_start, entry.end)
                }
                if pairs.get(1) == b"location" and 2 in pairs:
                    found.append(pairs[2].decode("utf-8", "replace"))
    return found


def _external_file(model: Path, location: str) -> Path:
    """An external-data file, refused outside the model's folder (as onnxruntime refuses it)."""
    folder = model.resolve().parent
    resolved = (folder / location).resolve()
    if PurePath(location).is_absolute() or folder not in resolved.parents:
        raise ModelLoadError(f"{model}: its external data {short_repr(location)} is outside the model's folder")
    return resolved


def coreml_sha256(path: str | os.PathLike) -> str:
    files = package_files(path)
    digest = hashlib.sha256()
    with mapped(files.spec) as data, memoryview(data) as view:  # released before the map closes
        for field in fields(data):
            if field.number not in (COREML_VERSION, COREML_DESCRIPTION):
                digest.update(view[field.start : field.end])
    for weight in files.weight_files:
        digest.update(weight.name.encode() + b"\0")
        update_digest(digest, weight)
    return digest.hexdigest()


def openvino_sha256(path: str | os.PathLike) -> str:
    from runtime.openvino_ir import weights_path

    digest = hashlib.sha256()
    update_digest(digest, weights_path(path))
    return digest.hexdigest()


def pte_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        start, _ = segments_range(handle)
        handle.seek(start)
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def torchscript_sha256(path: str | os.PathLike) -> str:
    with open_regular(path) as handle:
        return torchscript_archive_sha256(handle)


def torchscript_archive_sha256(archive_file: Any) -> str:
    """The digest of a TorchScript archive given as a binary file object (the exporter's in memory)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(archive_file) as archive:
        # Entry names start with the archive's own folder, named after the file it was saved as.
        tensors = sorted((info.filename.partition("/")[2], info) for info in archive.infolist())
        for name, info in tensors:
            if name.partition("/")[0] in TORCHSCRIPT_TENSOR_DIRS and not info.is_dir():
                digest.update(name.encode() + b"\0")
                with archive.open(info) as member:
                    for block in iter(lambda: member.read(_BLOCK), b""):
                        digest.update(block)
    return digest.hexdigest()


# Artifact format (a backend's `format`) -> the hex SHA-256 of its weights.
DIGESTS: dict[str, Callable[[str | os.PathLike], str]] = {
    "onnx": onnx_sha256,
    "coreml": coreml_sha256,
    "torchscript": torchscript_sha256,
    "openvino": openvino_sha256,
    "executorch": pte_sha256,
    "litert": tflite_sha256,
}


def weights_sha256(fmt: str, path: str | os.PathLike) -> str:
    """The digest of the `fmt` artifact at `path`; a one-line IntegrityError when it cannot be read."""
    try:
        return DIGESTS[fmt](path)
    except ModelLoadError:
        raise
    except (OSError, WireError, zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or first_line(exc)
        raise IntegrityError(f"{path} is damaged: reading its weights failed ({detail})") from exc


def verify_weights(path: str | os.PathLike, fmt: str, metadata: ArtifactMetadata | None) -> None:
    """Refuse the artifact unless its weights hash to the SHA-256 its metadata recorded. Nothing to
    check for a foreign model, an artifact exported before hashes were recorded, or a format
    without a digest (a checkpoint)."""
    recorded = metadata.weights_sha256 if metadata is not None else ""
    if not recorded or fmt not in DIGESTS:
        return
    actual = weights_sha256(fmt, path)
    if actual != recorded:
        raise IntegrityError(
            f"{path}: its weights do not match the SHA-256 recorded at export ({recorded[:12]}..., now "
            f"{actual[:12]}...): the copy is damaged or was changed; copy or export it again (--no-verify if you changed it on purpose)"
        )
