"""Shared command-line plumbing (click), torch-free so the runtime CLI can use it."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from runtime.errors import DeployError

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
            return command(*args, **kwargs)
        except DeployError as exc:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper
