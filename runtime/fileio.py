"""Reading files safely: a regular file is opened without ever blocking on a FIFO or device,
and hashed in blocks (a checkpoint is hundreds of MB). Torch-free; writing is runtime.outputs."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any, BinaryIO


class SpecialFileError(OSError):
    """A FIFO, device or socket where a regular file is needed (reading it could block or never end)."""


def special_file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is ("a FIFO", ...), for refusing it by name."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading, never blocking: a FIFO would hang a plain open() until
    some writer appears. Raises OSError (FileNotFoundError, IsADirectoryError, SpecialFileError)."""
    # O_NONBLOCK makes opening a FIFO return at once; fstat on the open descriptor then
    # checks the very file that was opened (no race between a check and the open). O_NOCTTY:
    # a terminal device given as a path must not become this process's controlling terminal.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        kind = special_file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise (IsADirectoryError if kind == "a directory" else SpecialFileError)(
                f"{os.fspath(path)} is {kind}, not a regular file"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of the regular file at `path`, read 1 MB at a time."""
    digest = hashlib.sha256()
    update_digest(digest, path)
    return digest.hexdigest()


def update_digest(digest: Any, path: str | os.PathLike) -> None:
    """Feed the regular file at `path` to a hashlib object, 1 MB at a time."""
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
