"""The one place that writes output files (checkpoints, artifacts, reports, plots); torch-free.

- A regular file is replaced atomically (temp file beside it, fsync, rename): a crash, a full
  disk or Ctrl-C leaves the previous file as it was. A symlink is followed: the file it points
  to is replaced, the link stays.
- A device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written directly; what
  else may be an output (and ``-``, stdout) is decided in runtime/output_paths.py.
- Temp files are ``.<name>.alexnet-<pid>-<random>.tmp``; the next write of the same target
  removes those whose process is gone (SIGKILL, power cut). The pid test assumes one machine:
  two hosts writing one network folder could lose each other's temp files, never a finished file.
- Text and JSON outputs (`write_text`, `dumps_json`) go through the same atomic write.

Failures raise `OutputError`: one line naming the path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.errors import DeployError, first_line
from runtime.output_paths import STDOUT, OutputError, check_output_path, is_stdout, plan_write

__all__ = [
    "STDOUT",
    "OutputError",
    "atomic_write",
    "check_output_path",
    "dumps_json",
    "is_stdout",
    "process_running",
    "remove_stale_temps",
    "replace_directory",
    "write_text",
]

TEMP_TAG = "alexnet"
# Free space kept beyond the expected size: file-system overhead and estimates that run short.
SPACE_MARGIN = 16 << 20
ASIDE = ".old"  # suffix of a replaced directory's old version inside the temp folder

_TEMP_SUFFIX = re.compile(rf"{TEMP_TAG}-(\d+)-[0-9a-f]+\.tmp")


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], Any], *, expected_bytes: int | None = None, what: str | None = None
) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, fsync it and rename it over `path`; a device
    or FIFO gets `write(path)`. Returns the path written (a symlink's target).

    expected_bytes is checked against the free space first: torch.jit.save aborts the process
    on a full disk instead of raising. The temp file is removed on every failure; OSError and
    RuntimeError (torch.save's "enforce fail" on a full disk) become `OutputError`.
    """
    target, direct = plan_write(Path(path), what)
    if direct:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # what was printed comes first, should the target be the terminal or stdout
        _guarded(path, what, lambda: write(str(target)))
        return target
    parent = target.parent
    _check_space(path, parent, expected_bytes, what)
    remove_stale_temps(target)
    tmp = parent / _temp_name(target.name)
    # O_EXCL: never write through something planted at the temp name; umask applies as for any new file.
    _guarded(path, what, lambda: os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))

    def run() -> None:
        write(str(tmp))
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(parent)  # make the rename itself durable

    try:
        _guarded(path, what, run)
    except BaseException:
        _remove(tmp)
        raise
    return target


def _guarded(path: str | os.PathLike, what: str | None, action: Callable[[], Any]) -> None:
    try:
        action()
    except DeployError:
        raise
    except (OSError, RuntimeError) as exc:
        raise OutputError(path, _reason(exc), what) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


def _check_space(path: str | os.PathLike, parent: Path, expected_bytes: int | None, what: str | None) -> None:
    try:
        free = shutil.disk_usage(parent).free if expected_bytes else None
    except OSError:
        return  # a file system that does not say: the write itself will tell
    if free is not None and free < expected_bytes + SPACE_MARGIN:
        need, have = (
            (f"{n / 1e6:.0f}" if n >= 10e6 else f"{n / 1e6:.1f}") for n in (expected_bytes + SPACE_MARGIN, free)
        )
        raise OutputError(path, f"not enough space on {parent}: need ~{need} MB, {have} MB free", what)


def _temp_name(name: str) -> str:
    return f".{name}.{TEMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove `target`'s temp files/folders whose process is gone; returns them. An old .mlpackage
    moved aside by a run killed between its two renames is put back first if nothing replaced it."""
    prefix = f".{target.name}."
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_SUFFIX.fullmatch(entry.name[len(prefix) :]) if entry.name.startswith(prefix) else None
        if match is None or process_running(int(match.group(1))):
            continue
        stale = Path(entry.path)
        old = stale / (target.name + ASIDE)
        if stale.is_dir() and not stale.is_symlink() and os.path.lexists(old) and not os.path.lexists(target):
            try:
                os.replace(old, target)
            except OSError:
                continue  # keep the only copy where it is
        _remove(stale)
        removed.append(stale)
    return removed


def process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        pass  # another user's process, or cannot tell: leave its temp alone
    return True


def _remove(path: Path) -> None:
    """Best effort: what stays is removed by the next write of the same target."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a file's data (or a folder's renames) to disk; best effort for a folder."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a directory that cannot be opened (some file systems): the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise  # a file's data did not reach the disk: do not rename it into place
    finally:
        os.close(fd)


def replace_directory(
    path: str | os.PathLike, build: Callable[[str], Any], *, expected_bytes: int | None = None, what: str | None = None
) -> Path:
    """`build(tmp)` creates the directory (e.g. a .mlpackage) beside `path`; it then replaces `path`.

    The old version is renamed aside, the new one renamed in, and only then the old one
    deleted; if the second rename fails, the old one is moved back. `path` is absent only
    between two renames, and a run killed there is repaired by the next write.
    """
    target, _ = plan_write(Path(path), what, directory_ok=True)
    parent = target.parent
    _check_space(path, parent, expected_bytes, what)
    remove_stale_temps(target)
    workdir = parent / _temp_name(target.name)
    new, old = workdir / target.name, workdir / (target.name + ASIDE)

    def run() -> None:
        os.mkdir(workdir)
        build(str(new))
        had_old = os.path.lexists(target)
        if had_old:
            os.replace(target, old)  # os.replace cannot swap a non-empty directory: move it aside
        try:
            os.replace(new, target)
        except BaseException:
            if had_old:
                _put_back(old, target, path, what)
            raise

    try:
        _guarded(path, what, run)
    finally:
        if os.path.lexists(target) or not os.path.lexists(old):  # never delete the only copy
            _remove(workdir)
    return target


def _put_back(old: Path, target: Path, path: str | os.PathLike, what: str | None) -> None:
    try:
        os.replace(old, target)
    except OSError as exc:
        raise OutputError(path, f"{_reason(exc)}; the previous version is at {old}", what) from exc


def dumps_json(obj: Any, **kwargs: Any) -> str:
    """json.dumps that refuses NaN and infinities (invalid JSON), naming where the first one is."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        where = _non_finite(obj, "")
        raise OutputError(
            "JSON", f"{where or 'a value'} is not a finite number (JSON has no NaN or infinity)"
        ) from None


def _non_finite(obj: Any, where: str) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the value"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found.lstrip(".")
    return None


def write_text(path: str | os.PathLike, text: str, *, what: str | None = None) -> Path:
    """`text` (UTF-8) to `path` atomically, or to stdout when `path` is ``-``."""
    stream = sys.stdout if is_stdout(path) else _console_stream(path)
    if stream is not None:
        _guarded(path, what, lambda: (stream.write(text), stream.flush()))  # `> /dev/full`, a closed pipe
        return Path(path)
    return atomic_write(path, functools.partial(_append, text=text), what=what)


def _console_stream(path: str | os.PathLike) -> Any:
    """sys.stdout or sys.stderr when `path` is the file they write to (/dev/stdout, /dev/fd/2):
    through the stream, the text keeps its place among what the program prints."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if os.path.samestat(os.stat(path), os.fstat(stream.fileno())):
                return stream
        except (OSError, ValueError, AttributeError):  # no such file, or a stream without a file (tests)
            continue
    return None


def _append(path: str, text: str) -> None:
    # Append, not truncate: a temp file is new and empty anyway, and a file reached through an
    # open descriptor (/dev/fd/3 of `cmd 3>>log`) keeps what it held.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
