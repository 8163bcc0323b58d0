"""Parsing of alexnet-bench's list options, and the canonical command a result file records."""

from __future__ import annotations

import shlex
from typing import Any

import click

from benchmarks.runners import BACKENDS, PRECISIONS

ALIASES = {"compile": "torch.compile", "ort": "onnxruntime", "ov": "openvino", "eager": "pytorch"}
DEVICES = ("cpu", "cuda", "mps")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_backends(text: str) -> list[str]:
    if text == "all":
        return list(BACKENDS)
    return _known([ALIASES.get(name, name) for name in _split(text)], BACKENDS, "backend", text, "all")


def parse_devices(text: str) -> list[str]:
    if text == "auto":
        import torch

        from runtime.backends.torch_common import available_torch_devices

        found = available_torch_devices(torch)
        return [d for d in DEVICES if d in found]
    return _known(_split(text), DEVICES, "device", text, "auto")


def _known(names: list[str], allowed, kind: str, text: str, keyword: str) -> list[str]:
    """`names` without repeats, or a usage error naming the unknown ones and the choices."""
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        what = ", ".join(map(repr, unknown)) or repr(text)
        raise click.UsageError(f"unknown {kind} {what}; choose from {', '.join(allowed)} or {keyword}")
    return list(dict.fromkeys(names))


def parse_precisions(text: str) -> list[str]:
    if text == "all":
        return list(PRECISIONS)
    return _known(_split(text), PRECISIONS, "precision", text, "all")


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in _split(text)]
    except ValueError:
        raise click.UsageError(f"--batch-sizes takes comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.UsageError(f"batch sizes must be at least 1, got {text!r}")
    return sorted(set(sizes))


def canonical_command(checkpoint: str | None, params: dict[str, Any]) -> str:
    """The whole command, every setting explicit, so that a result file says how to reproduce it."""
    parts = ["alexnet-bench"] + ([checkpoint] if checkpoint else [])
    for key, value in params.items():
        if value is not None and value is not False:
            parts += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return shlex.join(parts)
