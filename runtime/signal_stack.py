"""Keep the calling thread's alternate signal stack across a call that replaces it.

OpenVINO's CPU plugin (seen with 2026.4) sets a new alternate signal stack (sigaltstack) on the
thread that compiles a model and later frees that memory without restoring the previous one. The
next signal that thread takes with SA_ONSTACK (CPython installs every Python-level handler so:
SIGINT, SIGTERM, a DataLoader's SIGCHLD) then runs on freed memory and kills the process with
SIGSEGV. Library code must not change process state, so every OpenVINO call that compiles a model
(the runtime backend, NNCF's quantizer, the benchmark's matmul probe) runs inside
`kept_signal_stack()`, which puts the thread's previous stack (or none) back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator


class _StackT(ctypes.Structure):  # struct stack_t (Linux and macOS share this layout)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack():  # libc's sigaltstack, or None where there is none (Windows)
    if sys.platform == "win32":
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    return function


_SIGALTSTACK = _sigaltstack()


def current_signal_stack() -> tuple[int | None, int, int] | None:
    """(address, flags, size) of this thread's alternate signal stack; None where it cannot be read."""
    if _SIGALTSTACK is None:
        return None
    stack = _StackT()
    if _SIGALTSTACK(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp, stack.ss_flags, stack.ss_size


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then restore this thread's alternate signal stack if the block replaced it."""
    if _SIGALTSTACK is None:
        yield
        return
    before = _StackT()
    saved = _SIGALTSTACK(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved:
            after = _StackT()
            _SIGALTSTACK(None, ctypes.byref(after))
            if (after.ss_sp, after.ss_flags, after.ss_size) != (before.ss_sp, before.ss_flags, before.ss_size):
                _SIGALTSTACK(ctypes.byref(before), None)
