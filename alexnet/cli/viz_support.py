"""alexnet-viz's plumbing: the -o PNG, its data file beside it, and the data sources."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from runtime import options
from runtime.outputs import OutputError, check_output_path, dumps_json, write_text

MAX_IMAGES = 10_000  # the most images a grid, batch or embedding plot takes from a split


def output_option(example: str) -> Callable:
    return options.output_option(
        f"The PNG to write (e.g. {example}); the data behind it goes beside it as .json.", kind="file", required=True
    )


def data_path(png: Path) -> Path | None:
    """The JSON written beside `png` (x.png -> x.json); none when the PNG goes to a device or pipe."""
    try:
        mode = os.stat(png).st_mode
    except OSError:  # not there yet (or not reachable: check_outputs says why)
        return png.with_suffix(".json")
    return png.with_suffix(".json") if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else None


def check_outputs(png: Path, *extra: tuple[Path | None, str]) -> None:
    """Usage errors (exit 2), before any work, for outputs that could not be written."""
    if png.suffix.lower() != ".png":
        raise click.UsageError(f"-o/--output takes a .png file name, got {png}")
    try:
        check_output_path(png, what="-o/--output")
        sidecar = data_path(png)
        if sidecar is not None:
            check_output_path(sidecar, what="-o/--output (its .json)")
        for path, what in extra:
            if path is not None:
                check_output_path(path, what=what)
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None


def write_picture(fig: Any, png: Path, data: dict, *, tight: bool = False) -> None:
    """The figure as PNG and `data` as JSON beside it, each atomically; says what was written."""
    from alexnet.plots import save_png

    palette = click.get_current_context().find_root().params.get("palette")  # alexnet-viz --palette N
    save_png(fig, png, tight=tight, palette=palette)
    sidecar = data_path(png)
    if sidecar is None:
        click.echo(f"wrote {png}", err=True)
        return
    write_text(sidecar, dumps_json(data, indent=1) + "\n", what="-o/--output (its .json)")
    click.echo(f"wrote {png} and {sidecar}", err=True)


def source_names(dataset: Any, data: str, split: str) -> list[str]:
    """One name per image: its file path, or "<data> <split> #<index>" for in-memory sets."""
    inner = getattr(dataset, "dataset", dataset)  # a RelabeledDataset wraps the ImageDataset
    if getattr(inner, "pixels", None) is None and hasattr(inner, "sources"):
        return [str(source) for source in inner.sources]
    return [f"{data} {split} #{index}" for index in range(len(dataset))]


def model_inputs(dataset: Any, indices: list[int]) -> tuple[np.ndarray, list[int]]:
    """(images (K, 3, S, S) float32 as the model sees them, labels) of `indices` (K may be 0)."""
    items = [dataset[i] for i in indices]
    images = [np.asarray(image, np.float32) for image, _ in items]
    return (np.stack(images) if images else np.zeros((0, 3, 1, 1), np.float32)), [int(label) for _, label in items]


def subset_note(total: int, limit: int) -> str:
    return f"; {limit:,} of its {total:,} images, spread evenly (--max-images)" if total > limit else ""
