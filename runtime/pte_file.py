"""An ExecuTorch program on disk (.pte), checked here before ExecuTorch reads it, without torch.

The layout (executorch/exir/_serialize/_program.py): a flatbuffer whose identifier is "ET" and
a version ("ET12") at bytes 4:8, then an extended header at 8: b"eh00", its uint32 length, the
uint64 program size, the uint64 offset of the first segment and (length 32) the uint64 size of
the segment data, little endian. The segments (XNNPACK's delegate blobs, constant data: the
weights) run from that offset to the end of the file; the program (and the alexnet-deploy
metadata, a constant method of it) comes before them.

ExecuTorch itself refuses a corrupt or truncated program, but only with an error code
("error: 0x:23") and a log line of its own on stderr; the checks here say what is wrong in one
line, and keep a FIFO or a device from being opened at all.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runtime.backends import ModelLoadError, check_model_path
from runtime.errors import first_line
from runtime.fileio import open_regular

MAX_PTE_BYTES = 2 << 30  # AlexNet fp32 is ~240 MB; a bound on what one untrusted file may make us map
IDENTIFIER = b"ET"  # bytes 4:6; 6:8 are the schema version ("12")
HEADER_OFFSET = 8
HEADER_MAGIC = b"eh00"
_MIN_HEADER = struct.calcsize("<4sIQQ")  # magic, length, program size, segment base offset
_FULL_HEADER = _MIN_HEADER + 8  # ... and the segment data size


@dataclass(frozen=True)
class PteHeader:
    program_size: int  # the flatbuffer's bytes counted from offset 0 (the header is inside it)
    segment_base_offset: int  # 0: no segments
    segment_data_size: int  # 0: no segments, or a header too old to say
    file_size: int

    @property
    def expected_size(self) -> int:
        """The bytes the header says the file holds (at least)."""
        end = self.segment_base_offset + self.segment_data_size if self.segment_base_offset else 0
        return max(self.program_size, end)


def read_header(handle: BinaryIO) -> PteHeader | None:
    """The extended header of the open .pte, or None when it has none."""
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    head = handle.read(HEADER_OFFSET + _FULL_HEADER)
    block = head[HEADER_OFFSET:]
    if len(block) < _MIN_HEADER or block[:4] != HEADER_MAGIC:
        return None
    _, length, program_size, base = struct.unpack_from("<4sIQQ", block)
    if length < _MIN_HEADER:
        return None
    data_size = struct.unpack_from("<Q", block, _MIN_HEADER)[0] if length >= _FULL_HEADER else 0
    return PteHeader(program_size, base, data_size, size)


def segments_range(handle: BinaryIO) -> tuple[int, int]:
    """(start, end) of the segment data (the weights) of the open .pte; ValueError without any."""
    header = read_header(handle)
    if header is None:
        raise ValueError('no ExecuTorch extended header ("eh00" at byte 8)')
    base = header.segment_base_offset
    if base == 0 or base >= header.file_size or base < header.program_size:
        raise ValueError(f"no segment data (the header puts it at byte {base} of {header.file_size})")
    return base, header.file_size


def check_pte(path: str | Path) -> Path:
    """`path` once it is safe to hand to ExecuTorch: a bounded regular file that looks like a
    program and is not shorter than its header says; a one-line ModelLoadError otherwise."""
    path = Path(path)
    check_model_path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an ExecuTorch program (.pte)")
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            header = read_header(handle) if size <= MAX_PTE_BYTES else None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or first_line(exc)}") from exc
    if size > MAX_PTE_BYTES:
        raise ModelLoadError(f"{path} is larger than {MAX_PTE_BYTES >> 30} GiB; not an AlexNet ExecuTorch program")
    if head[4:6] != IDENTIFIER:
        what = "empty" if size == 0 else f"no ExecuTorch program (bytes 4:8 are {head[4:8]!r}, not b'ET..')"
        raise ModelLoadError(f"{path} is {what}; an ExecuTorch .pte starts with a flatbuffer identified 'ET'")
    if header is not None and header.expected_size > size:
        raise ModelLoadError(
            f"{path} is truncated: its header says {header.expected_size:,} bytes, the file has {size:,}"
        )
    return path
