"""The project's error base class: every expected failure (bad file, bad input, missing
backend) is a `DeployError`, which the command-line tools turn into a one-line message
and exit status 1. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class DeployError(Exception):
    """An expected, user-facing failure; its message is one line that says what to do."""


class MetadataError(DeployError, ValueError):
    """Metadata (an artifact's or checkpoint's class names, preprocessing, input shape) is missing,
    unreadable or out of bounds. Defined here, not in runtime.metadata, so runtime.preprocess
    can raise it too; runtime.metadata re-exports it."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one line (at most `limit` characters), for a one-line error.

    Engines put multi-line reports in their messages; the first line says what failed, except
    TorchScript's, whose real reason comes last, after its own traceback.
    """
    text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    torchscript = lines[0].startswith("The following operation failed in the TorchScript")
    line = lines[-1] if torchscript or "Traceback of TorchScript" in text else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextlib.contextmanager
def quiet_logger(logger_name: str) -> Iterator[None]:
    """Silence a logger's warnings for the duration (e.g. "torchvision is not installed. Skipping
    torchvision::nms"); its level is restored after, so an application's logging is left as it was."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
