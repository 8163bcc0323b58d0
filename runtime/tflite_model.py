"""A LiteRT (TensorFlow Lite) model file, read without the interpreter: checks, our metadata, the digest.

A .tflite file is one flatbuffer (schema: ai_edge_litert/schema_py_generated.py) whose root
Model holds the graph and a list of buffers (the weights). Model.metadata names some of those
buffers; alexnet-deploy's metadata is the one named METADATA_KEY, its JSON text as the buffer's
bytes. A buffer is stored inline (`data`) or, in a model over 2 GiB, outside the flatbuffer at
`offset`/`size` from the file's start.

A hostile file can point anywhere: every position read here is checked against the file's size,
counts are bounded, and any fault is a one-line ModelLoadError naming the file. The schema comes
from ai_edge_litert, imported when first needed (the [litert-runtime] extra); no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.backends import BackendUnavailableError, ModelLoadError, check_model_path
from runtime.errors import MetadataError, first_line
from runtime.fileio import open_regular
from runtime.formats import install_hint
from runtime.metadata import METADATA_KEY

IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4:8 of every TFLite model
MAX_TFLITE_BYTES = 2 << 30  # a flatbuffer addresses at most 2 GiB (AlexNet fp32 is ~240 MB)
MAX_METADATA_BYTES = 16 << 20  # our JSON is a few KB; a bound on what one untrusted entry may make us decode
MAX_ENTRIES = 1 << 20  # buffers or metadata entries in one model (AlexNet has ~50): bounds the loops
_BUFFER_DATA = 4  # Buffer.data's vtable slot (generated code: Buffer.Data*, Offset(4))
_FAULTS = (struct.error, ValueError, IndexError, TypeError, OverflowError)  # flatbuffers' reads past the end


def schema() -> Any:
    """ai_edge_litert's generated TFLite schema; BackendUnavailableError when it is not installed."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise BackendUnavailableError(
            f"reading a .tflite model needs ai-edge-litert: {install_hint('litert-runtime')}"
        ) from None
    return schema_py_generated


def read_tflite(path: str | os.PathLike) -> bytes:
    """The bytes of the model at `path`, once they are a bounded regular file with the TFLite identifier."""
    check_model_path(Path(path))  # exists; not a FIFO or device
    try:
        with open_regular(path) as handle:
            data = handle.read(MAX_TFLITE_BYTES + 1)
    except OSError as exc:  # IsADirectoryError, SpecialFileError, permissions
        raise ModelLoadError(f"cannot read {os.fspath(path)}: {exc.strerror or first_line(exc)}") from exc
    if len(data) > MAX_TFLITE_BYTES:
        raise ModelLoadError(f"{os.fspath(path)} is larger than {MAX_TFLITE_BYTES >> 30} GiB; not a TFLite model")
    _check_identifier(data, path)
    return data


def check_tflite(path: str | os.PathLike) -> None:
    """A one-line ModelLoadError unless `path` is a regular file of at most MAX_TFLITE_BYTES that
    starts like a TFLite flatbuffer."""
    read_tflite(path)


def read_metadata(model_bytes: Any, source: str | os.PathLike = "the model") -> str | None:
    """The JSON text of the metadata entry named METADATA_KEY, or None when there is none (a foreign model)."""
    with _parsing(source):
        model = _root(model_bytes, source)
        for name, index in _metadata_entries(model, source):
            if name == METADATA_KEY.encode():
                start, end = _buffer_span(model, index, len(model_bytes), source)
                if end - start > MAX_METADATA_BYTES:
                    raise ModelLoadError(
                        f"{os.fspath(source)}: its {METADATA_KEY} metadata is larger than {MAX_METADATA_BYTES >> 20} MiB"
                    )
                try:
                    return bytes(model_bytes[start:end]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise MetadataError(f"{os.fspath(source)}: its {METADATA_KEY} metadata is not UTF-8 text") from exc
    return None


def buffers_sha256(model_bytes: Any, source: str | os.PathLike = "the model") -> str:
    """SHA-256 over every non-empty buffer the model's metadata entries do not name, in order, each
    as its length (8 bytes, little-endian) then its data: the weights, wherever stored. Adding or
    replacing metadata leaves it unchanged; so does re-serializing (which drops empty buffers)."""
    digest = hashlib.sha256()
    with _parsing(source), memoryview(model_bytes) as view:  # no copy of the weights; released before a map closes
        model = _root(model_bytes, source)
        named = {index for _, index in _metadata_entries(model, source)}
        for index in range(_bounded(model.BuffersLength(), "buffers", source)):
            if index in named:
                continue
            start, end = _buffer_span(model, index, len(view), source)
            if end > start:
                digest.update((end - start).to_bytes(8, "little"))
                digest.update(view[start:end])
    return digest.hexdigest()


def tflite_sha256(path: str | os.PathLike) -> str:
    """`buffers_sha256` of the file at `path` (runtime.integrity.DIGESTS["litert"])."""
    from runtime.integrity import mapped  # runtime.integrity imports this module

    with mapped(path) as data:
        return buffers_sha256(data, source=path)


def add_metadata(model_bytes: bytes, text: str) -> bytes:
    """The model with `text` as its METADATA_KEY metadata entry (added, or its buffer replaced in place,
    so no orphan buffer enters the digest). Re-serialized through the schema's object API: buffers stored
    by offset come back inline, empty buffers are dropped; neither changes `buffers_sha256`."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    fb = schema()
    payload = text.encode("utf-8")
    if len(payload) > MAX_METADATA_BYTES:
        raise ValueError(f"{METADATA_KEY} metadata of {len(payload):,} bytes is over {MAX_METADATA_BYTES >> 20} MiB")
    _check_identifier(model_bytes, "the model")
    model = flatbuffer_utils.read_model_from_bytearray(bytes(model_bytes))
    for buffer in model.buffers:
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(bytes(buffer.data), np.uint8)  # packed as one block, not byte by byte
    data = fb.BufferT(data=np.frombuffer(payload, np.uint8))
    entry = next((m for m in model.metadata or [] if m.name in (METADATA_KEY, METADATA_KEY.encode())), None)
    if entry is None:
        model.buffers.append(data)
        model.metadata = [*(model.metadata or []), fb.MetadataT(name=METADATA_KEY, buffer=len(model.buffers) - 1)]
    else:
        model.buffers[entry.buffer] = data
    result = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if read_metadata(result) != text:
        raise ModelLoadError(f"writing the {METADATA_KEY} metadata into the TFLite model did not read back")
    return result


def _check_identifier(data: Any, source: str | os.PathLike) -> None:
    if len(data) < 8 or bytes(data[4:8]) != IDENTIFIER:
        what = "empty" if not len(data) else f"not a TFLite model (no {IDENTIFIER.decode()} flatbuffer identifier)"
        raise ModelLoadError(f"{os.fspath(source)} is {what}")


@contextlib.contextmanager
def _parsing(source: str | os.PathLike) -> Iterator[None]:
    """flatbuffers reads positions a damaged file gives it: a read past the end raises, here one line."""
    try:
        yield
    except (ModelLoadError, MetadataError):
        raise
    except _FAULTS as exc:
        raise ModelLoadError(f"{os.fspath(source)} is a damaged TFLite model ({first_line(exc)})") from exc


def _root(data: Any, source: str | os.PathLike) -> Any:
    _check_identifier(data, source)
    return schema().Model.GetRootAs(data, 0)


def _bounded(count: int, what: str, source: str | os.PathLike) -> int:
    if count > MAX_ENTRIES:
        raise ModelLoadError(f"{os.fspath(source)} is a damaged TFLite model: it claims {count:,} {what}")
    return count


def _metadata_entries(model: Any, source: str | os.PathLike) -> list[tuple[bytes, int]]:
    """(name, buffer index) of each Model.metadata entry."""
    count = _bounded(model.MetadataLength(), "metadata entries", source)
    return [(model.Metadata(i).Name() or b"", model.Metadata(i).Buffer()) for i in range(count)]


def _buffer_span(model: Any, index: int, size: int, source: str | os.PathLike) -> tuple[int, int]:
    """[start, end) of buffer `index`'s bytes in the file, checked to lie inside it."""
    if not 0 <= index < model.BuffersLength():
        raise ModelLoadError(f"{os.fspath(source)} is a damaged TFLite model: it names buffer {index}, which it lacks")
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:  # stored outside the flatbuffer; offset 0 or 1 means "not stored that way"
        start, end = buffer.Offset(), buffer.Offset() + buffer.Size()
    else:
        # The generated accessors give the data only as a numpy view, which would pin a memory map
        # open; the table gives its position.
        slot = buffer._tab.Offset(_BUFFER_DATA)
        start = buffer._tab.Vector(slot) if slot else 0
        end = start + (buffer._tab.VectorLen(slot) if slot else 0)
    if not 0 <= start <= end <= size:
        raise ModelLoadError(f"{os.fspath(source)} is a damaged TFLite model: buffer {index} lies outside the file")
    return start, end
