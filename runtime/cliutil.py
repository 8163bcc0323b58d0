"""Shared command-line plumbing (click), torch-free so the runtime CLI can use it."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from runtime.errors import DeployError


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into `click.ClickException` (one line on stderr, exit 1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DeployError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper
