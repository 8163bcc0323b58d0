"""Where an output may go, checked before any long work; torch-free.

A regular file (or a symlink to one) is replaced through a temp file and a rename
(runtime.outputs). A device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is
written directly: a rename would replace it with a regular file. A directory (but a
.mlpackage being replaced) or a socket is refused. ``-`` means stdout for text outputs.

Failures raise `OutputError`: one line naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runtime.errors import DeployError

STDOUT = "-"


class OutputError(DeployError, OSError):
    """An output cannot be written (bad place, no space, the writer failed). An OSError too,
    so callers that already handled OSError from a write keep working."""

    def __init__(self, path: str | os.PathLike, reason: str, what: str | None = None) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot write {what + ' ' if what else ''}{path}: {reason}")


def is_stdout(path: str | os.PathLike | None) -> bool:
    return path is not None and os.fspath(path) == STDOUT


def check_output_path(
    path: str | os.PathLike, *, what: str | None = None, directory_ok: bool = False, stdout_ok: bool = False
) -> Path:
    """Refuse, before any long work, an output that could not be written. what: how messages name
    it ("--json"); directory_ok: it is a directory (.mlpackage); stdout_ok: the caller takes ``-``."""
    if is_stdout(path) and not stdout_ok:
        raise OutputError(path, "this output cannot go to stdout ('-'); give a file name", what)
    if not is_stdout(path):
        plan_write(Path(path), what, directory_ok)
    return Path(path)


def plan_write(path: Path, what: str | None, directory_ok: bool = False) -> tuple[Path, bool]:
    """(the path to write, whether to write it directly rather than through a temp file and rename);
    OutputError when nothing could be written there."""
    try:
        info = os.stat(path)  # follows symlinks: the kind of what a write would reach
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a symlink loop, a parent that is a file, no permission to look
        raise OutputError(path, _missing_parent(path) or exc.strerror or str(exc), what) from exc
    if info is not None and (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        if directory_ok:
            raise OutputError(path, "it is a device or pipe, not a directory", what)
        if not os.access(path, os.W_OK):
            raise OutputError(path, "it is not writable", what)
        return path, True
    if info is not None and stat.S_ISDIR(info.st_mode) and not directory_ok:
        raise OutputError(path, "it is a directory", what)
    if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise OutputError(path, "it is a socket or other special file, not a file", what)
    if info is not None and _through_proc(path):
        # /dev/stdout and /dev/fd/N lead to /proc/<pid>/fd/N: an open stream (maybe a
        # redirected file), which a rename would detach from its name; write through it.
        return path, True
    target = Path(os.path.realpath(path))  # a symlink's target is replaced, the link is kept
    parent = target.parent
    reason = _missing_parent(target)
    if reason:
        raise OutputError(path, reason, what)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(path, f"directory {parent} is not writable", what)
    return target, False


def _through_proc(path: Path) -> bool:
    """Whether `path` reaches its file through /proc (a process's open file descriptors)."""
    for _ in range(40):  # the kernel's own limit on symlinks followed in one lookup
        if Path(os.path.realpath(path.parent)).parts[1:2] == ("proc",):
            return True
        if not path.is_symlink():
            return False
        path = path.parent / os.readlink(path)  # an absolute link replaces the whole path
    return False


def _missing_parent(path: Path) -> str | None:
    """Why `path`'s folder cannot hold it, naming the first ancestor that is in the way; None if it can."""
    parent = path.parent
    if parent.is_dir():
        return None
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        return f"{ancestor} is a file, not a directory"
    return f"directory {parent} does not exist"
