"""The first convolution's kernels as an RGB grid (the 2012 paper's Figure 3).

Each kernel (3, k, k) is scaled to [0, 1] on its own (min -> 0, max -> 1): kernels differ in
magnitude by orders, and one scale for all would show most as flat grey. In the paper's network
conv2 reads conv1's channels in two groups (its two GPUs): the first half of the kernels feeds
one, the second half the other, so the paper variant is drawn as two blocks, as in the paper.
"""

from __future__ import annotations

import math

import numpy as np

from alexnet.plots import figure_pixels
from alexnet.viz.grid import mosaic

COLUMNS = 16
TILE = 40  # pixels per kernel, borders included
HEADER = 40  # pixels above each block


def normalize_kernels(weight: np.ndarray) -> np.ndarray:
    """(C, 3, k, k) weights -> (C, k, k, 3) RGB in [0, 1], each kernel min-max scaled on its own."""
    weight = np.asarray(weight, dtype=np.float64)
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    span = weight.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = np.divide(weight - low, span, out=np.full_like(weight, 0.5), where=span > 0)
    return scaled.transpose(0, 2, 3, 1).astype(np.float32)


def filters_size(count: int, groups: int) -> tuple[int, int]:
    """(width, height) in pixels of the grid of `count` kernels in `groups` blocks."""
    columns = min(COLUMNS, count)
    rows_per_group = math.ceil(count / groups / columns)
    return columns * TILE + 40, groups * (rows_per_group * TILE + HEADER) + 20


def filters_figure(weight: np.ndarray, *, groups: int = 1, title: str = "conv1 kernels"):
    """The grid as a Figure: `weight` (C, 3, k, k), drawn in `groups` blocks (2 for the paper variant)."""
    count = len(weight)
    width, height = filters_size(count, groups)
    fig = figure_pixels(width, height)
    columns = min(COLUMNS, count)
    blocks = np.split(normalize_kernels(weight), groups)  # consecutive blocks, as conv2 reads them
    axes = fig.subplots(groups, 1, squeeze=False)[:, 0]
    fig.subplots_adjust(
        left=20 / width, right=1 - 20 / width, top=1 - (HEADER - 8) / height, bottom=10 / height, hspace=0.25
    )
    k = weight.shape[-1]
    for number, (ax, block) in enumerate(zip(axes, blocks), start=1):
        ax.imshow(mosaic(block, columns), interpolation="nearest")
        ax.axis("off")
        what = f"group {number} of {groups} ({len(block)} kernels)" if groups > 1 else f"{len(block)} kernels"
        ax.set_title(f"{title}: {what}, {k}x{k}x3, each scaled to its own range", fontsize=10)
    return fig
