"""Just enough of the protobuf wire format to find an encoded message's fields by number, without
its schema (runtime has no `onnx` package) and without re-serializing it.

The integrity check (runtime/integrity.py) hashes the exact bytes an artifact holds: re-serializing
a parsed message is not a reproduction of them (protobuf writes map entries in no fixed order;
a Core ML spec, full of maps, serializes differently from one process to the next).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_FIXED_SIZE = {FIXED64: 8, FIXED32: 4}
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True)
class Field:
    """One field record: its number and wire type; `start` is where the record (its tag) begins,
    [value_start, end) its value's bytes (a length-delimited field's payload); `number_value`
    the decoded varint of a VARINT field, else 0."""

    number: int
    wire_type: int
    start: int
    value_start: int
    end: int
    number_value: int = 0


def read_varint(data: Any, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; `data` is bytes, a memoryview or an mmap."""
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if pos >= end:
            raise WireError("a varint runs past the end of the message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise WireError("a varint is longer than 10 bytes")


def fields(data: Any, start: int = 0, end: int | None = None) -> Iterator[Field]:
    """Every field record of the message in data[start:end], in the order written."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        record = pos
        tag, pos = read_varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("a field numbered 0")
        value = 0
        if wire_type == VARINT:
            value, after = read_varint(data, pos, end)
        elif wire_type == LEN:
            length, pos = read_varint(data, pos, end)
            after = pos + length
        elif wire_type in _FIXED_SIZE:
            after = pos + _FIXED_SIZE[wire_type]
        else:  # 3 and 4 (groups) are long deprecated; nothing we read writes them
            raise WireError(f"field {number} has wire type {wire_type}, which is not read here")
        if after > end:
            raise WireError(f"field {number} runs past the end of the message")
        yield Field(number, wire_type, record, pos, after, value)
        pos = after


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """The record of field `number` holding `payload` (a string, bytes or an encoded message)."""
    return encode_varint(number << 3 | LEN) + encode_varint(len(payload)) + payload


def replace_field(data: bytes, number: int, payload: bytes) -> bytes:
    """`data` with field `number`'s record(s) replaced by one holding `payload`, where the first
    was; every other record keeps its exact bytes (appended at the end when there was none)."""
    parts, placed = [], False
    for field in fields(data):
        if field.number != number:
            parts.append(data[field.start : field.end])
        elif not placed:
            parts.append(length_delimited(number, payload))
            placed = True
    if not placed:
        parts.append(length_delimited(number, payload))
    return b"".join(parts)
