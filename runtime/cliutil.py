"""Shared command-line plumbing (click), torch-free so the runtime CLI can use it."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from runtime.errors import DeployError
from runtime.output_paths import OutputError

DEBUG_ENV = "ALEXNET_DEBUG"  # ALEXNET_DEBUG=1: library errors keep their full traceback (and causes)


def set_torch_threads(threads: int | None) -> None:
    """At a CLI's entry point only: torch's intra-op thread count is process-wide, so no library
    call sets it. Imports nothing: applies when torch is already loaded (a torch backend is open)."""
    torch = sys.modules.get("torch")
    if threads and torch is not None:
        torch.set_num_threads(int(threads))


def echo_notice(predictor: Any, model: object) -> None:
    """The backend's line for the user before it runs `model` (e.g. that the Core ML reference
    evaluator stands in for Core ML), on stderr so stdout stays the results."""
    line = predictor.notice(model)
    if line:
        click.echo(line, err=True)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into `click.ClickException` (one line on stderr, exit 1).

    With ALEXNET_DEBUG=1 in the environment the error propagates with its traceback and its
    chained causes instead, for a bug report.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            with stdout_errors():
                sys.stdout.flush()  # what is still buffered fails here, as one line, not at exit
            return result
        except DeployError as exc:
            _drop_unwritable_stdout()
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


@contextlib.contextmanager
def stdout_errors() -> Iterator[None]:
    """Around writes to stdout: a failure (`> /dev/full`, a closed pipe) is an OutputError, not
    a traceback. Only where every OSError inside can be stdout's."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError("stdout", exc.strerror or str(exc), "to") from exc


def _drop_unwritable_stdout() -> None:
    """Before exiting on an error: if stdout cannot take what is still buffered, point it at
    /dev/null, or the interpreter's own flush at exit fails again and prints "Exception
    ignored" lines after the one-line error."""
    try:
        sys.stdout.flush()
        return
    except OSError:
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # a stream without a descriptor (tests): nothing is flushed to a file at exit
    finally:
        os.close(devnull)
