"""The files an alexnet-batch run predicts, listed once on the driver.

Inputs are files, folders (walked as alexnet-run walks them), globs (quoted, expanded here, `**`
recursive), list files (`.txt`: one path per line; `.parquet`: a `path` column), or URIs pyarrow
understands (s3://, gs://, file://), listed with pyarrow's file systems. Every file becomes one
output row under its name: the absolute path of a local file, the URI of a remote one.

A file Ray could not read without failing the job (missing, not a regular file, unreadable, larger
than any image we decode) is not given to Ray: its row is the one-line error alexnet-run prints.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from runtime.decode import MAX_DECODED_BYTES, read_errors
from runtime.errors import DeployError, first_line
from runtime.fileio import open_regular
from runtime.preprocess import IMAGE_SUFFIXES, ImageLoadError

LIST_SUFFIXES = (".txt", ".parquet")  # an input with one of these names lists paths, one per row
# A file is read whole into Ray's object store: none larger than the most pixels we decode (an
# uncompressed image of that budget; every compressed one is smaller).
MAX_FILE_BYTES = MAX_DECODED_BYTES
MAX_LIST_LINE = 4096  # bytes in one line of a .txt list (PATH_MAX on Linux)
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


class InputListError(DeployError):
    """An input cannot be listed: a bad list file, a URI no file system takes, local and remote mixed."""


@dataclass
class Listing:
    """What a run predicts: `files` go to Ray; `errors` (name -> one line) are rows already."""

    files: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # files without an image suffix, left out
    duplicates: int = 0  # names listed more than once: one row each
    scheme: str | None = None  # the URIs' scheme (s3, gs, file), None for local paths

    @property
    def names(self) -> list[str]:
        """Every row's name, in listing order."""
        return self.files + list(self.errors)

    def add(self, name: str, error: str | None) -> None:
        if name in self.errors or name in self._seen:
            self.duplicates += 1
            return
        self._seen.add(name)
        if error is None:
            self.files.append(name)
        else:
            self.errors[name] = error

    def __post_init__(self) -> None:
        self._seen: set[str] = set(self.files)


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def list_inputs(inputs: Iterable[str]) -> Listing:
    """The image files among `inputs`, each checked as far as the driver can without reading it."""
    listing = Listing()
    for arg in inputs:
        if is_uri(arg):
            _add_uri(listing, arg)
        elif os.path.splitext(arg)[1].lower() in LIST_SUFFIXES and os.path.isfile(arg):
            for entry in _list_file(arg):
                _add_entry(listing, entry)
        else:
            _add_local(listing, arg)
    return listing


def _add_entry(listing: Listing, entry: str) -> None:
    """A list file's entry: one image file (a path or URI), never walked or expanded."""
    if is_uri(entry):
        _add_uri(listing, entry, walk=False)
    else:
        _set_scheme(listing, None, entry)
        listing.add(os.path.abspath(entry), local_file_error(entry))


def _add_local(listing: Listing, arg: str) -> None:
    from runtime.cli import collect_images  # alexnet-run's walk: the same files, the same order

    _set_scheme(listing, None, arg)
    matches = [arg] if os.path.lexists(arg) or not glob.has_magic(arg) else sorted(glob.glob(arg, recursive=True))
    images, skipped = collect_images(tuple(matches))
    listing.skipped += skipped
    for path in images:
        listing.add(os.path.abspath(path), local_file_error(path))


def local_file_error(path: str) -> str | None:
    """None for a readable regular file of a bounded size, else alexnet-run's one-line error for it."""
    try:
        info = os.stat(path)
        readable = stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK)
    except OSError:
        readable = False
    if not readable:
        try:  # what reading it says: no such file, a FIFO, permission denied
            with read_errors(path), open_regular(path):
                pass
        except ImageLoadError as exc:
            return str(exc)
        return None  # readable after all (a race): Ray reads it
    return _size_error(path, info.st_size)


def _size_error(name: str, size: int) -> str | None:
    if size > MAX_FILE_BYTES:
        return f"{name}: refused, a file of {size:,} bytes, more than the {MAX_FILE_BYTES:,} allowed"
    return None


def _add_uri(listing: Listing, uri: str, walk: bool = True) -> None:
    """A remote file, or (walk) a remote folder's image files, through pyarrow's file systems."""
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0].lower()
    _set_scheme(listing, scheme, uri)
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if walk and info.type == pafs.FileType.Directory:
            found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
            infos = sorted((i for i in found if i.type == pafs.FileType.File), key=lambda i: i.path)
        else:
            infos = [info]
    except (OSError, ValueError, TypeError) as exc:
        raise InputListError(f"{uri}: cannot list it ({first_line(exc)})") from None
    for item in infos:
        name = f"{scheme}://{item.path}"
        if walk and info.type == pafs.FileType.Directory and _is_hidden_or_other(item.base_name):
            listing.skipped.append(name)
        elif item.type == pafs.FileType.NotFound:
            listing.add(name, f"{name}: no such file")
        elif item.type != pafs.FileType.File:
            listing.add(name, f"{name}: is not a file; not read")
        else:
            listing.add(name, _size_error(name, item.size or 0))


def _is_hidden_or_other(base: str) -> bool:
    return base.startswith(".") or os.path.splitext(base)[1].lower() not in IMAGE_SUFFIXES


def _set_scheme(listing: Listing, scheme: str | None, arg: str) -> None:
    """One file system per run: Ray reads every file through the same one."""
    if listing.files or listing.errors:
        if listing.scheme != scheme:
            given = f"{listing.scheme}:// URIs" if listing.scheme else "local paths"
            raise InputListError(f"{arg}: one run reads from one file system, and earlier inputs were {given}")
    listing.scheme = scheme


def _list_file(path: str) -> list[str]:
    """The paths a .txt (one per line; blank lines and # comments skipped) or .parquet (`path`) lists."""
    if path.lower().endswith(".parquet"):
        return _parquet_paths(path)
    entries = []
    try:
        with open_regular(path) as handle:
            for number, raw in enumerate(handle, 1):
                if len(raw) > MAX_LIST_LINE:
                    raise InputListError(f"{path}:{number}: a line longer than {MAX_LIST_LINE} bytes is not a path")
                line = raw.decode("utf-8").strip()
                if line and not line.startswith("#"):
                    entries.append(line)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputListError(f"{path}: cannot read the list ({first_line(exc)})") from None
    return entries


def _parquet_paths(path: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open_regular(path) as handle:
            table = pq.read_table(handle, columns=["path"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise InputListError(f"{path}: cannot read a `path` column from it ({first_line(exc)})") from None
    if not pa.types.is_string(table.schema.field("path").type) and not pa.types.is_large_string(
        table.schema.field("path").type
    ):
        raise InputListError(f"{path}: its `path` column holds {table.schema.field('path').type}, not strings")
    return [p for p in table.column("path").to_pylist() if p]
