"""The click parameter types behind runtime.options: torch-free, so every command (alexnet-run
on an edge install included) parses its values the same way."""

from __future__ import annotations

import re
from typing import Any

import click

from runtime.backends import DEVICES, backend_names

_CUDA_INDEX = re.compile(r"cuda:[0-9]+")


class BackendChoice(click.Choice):
    """auto or any backend `runtime.load` knows: built in, registered, or an installed plugin,
    discovered when the command runs (not when this module is imported)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> list[str]:
        return ["auto", *backend_names()]

    @choices.setter
    def choices(self, value: Any) -> None:
        pass  # always discovered


class DeviceChoice(click.Choice):
    """One of runtime.backends.DEVICES; with `indexed`, also cuda:N (a torch device: alexnet-train
    picks one GPU of several, which the runtime's backends do not)."""

    def __init__(self, indexed: bool = False) -> None:
        super().__init__(DEVICES)
        self.indexed = indexed

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if self.indexed and isinstance(value, str) and _CUDA_INDEX.fullmatch(value):
            return value
        return super().convert(value, param, ctx)


class BatchSizes(click.ParamType):
    """Comma-separated batch sizes, e.g. 1,8,32 -> (1, 8, 32): sorted, without repeats, each >= 1."""

    name = "batch sizes"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N[,N...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        parts = list(value) if isinstance(value, (tuple, list)) else [p.strip() for p in str(value).split(",")]
        parts = [p for p in parts if p != ""]
        try:
            sizes = [int(p) for p in parts]
        except (TypeError, ValueError):
            self.fail(f"{value!r}: batch sizes are comma-separated integers (e.g. 1,8,32)", param, ctx)
        if not sizes:
            self.fail(f"{value!r}: give at least one batch size, as comma-separated integers (e.g. 1,8,32)", param, ctx)
        if min(sizes) < 1:
            self.fail(f"batch sizes must be at least 1, got {value!r}", param, ctx)
        return tuple(sorted(set(sizes)))
