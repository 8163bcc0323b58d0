"""Grids: images with a caption under each (prediction grids, training batches), and tile mosaics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from alexnet.plots import figure_pixels

COLUMNS = 8
CELL = 150  # pixels per image, square
CAPTION = 44  # pixels of caption under each image
TITLE = 36
WRONG, RIGHT, NEUTRAL = "tab:red", "tab:green", "black"


def mosaic(tiles: np.ndarray, columns: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """(N, h, w[, 3]) tiles -> one image of ceil(N / columns) rows, `pad` pixels of `fill` between."""
    count, h, w = tiles.shape[:3]
    rows = max(math.ceil(count / columns), 1)
    shape = (rows * (h + pad) + pad, columns * (w + pad) + pad) + tiles.shape[3:]
    image = np.full(shape, fill, dtype=np.float32)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        image[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return image


def grid_size(count: int, columns: int = COLUMNS) -> tuple[int, int]:
    """(width, height) in pixels of a grid of `count` images."""
    columns = max(min(columns, count), 1)
    rows = max(math.ceil(count / columns), 1)
    return columns * CELL, TITLE + rows * (CELL + CAPTION)


def image_grid_figure(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    title: str,
    *,
    colours: Sequence[str] | None = None,
    columns: int = COLUMNS,
):
    """`images` (each (H, W, 3) uint8) in rows of `columns`, `captions` under them; a red caption
    also gets a red frame (a wrong prediction)."""
    count = len(images)
    width, height = grid_size(count, columns)
    fig = figure_pixels(width, height)
    columns = max(min(columns, count), 1)
    colours = list(colours or [NEUTRAL] * count)
    fig.suptitle(title, fontsize=11, y=1 - 8 / height, va="top")
    cell_w, cell_h = CELL / width, (CELL + CAPTION) / height
    for index, (image, caption, colour) in enumerate(zip(images, captions, colours)):
        row, col = divmod(index, columns)
        bottom = 1 - TITLE / height - (row + 1) * cell_h + CAPTION / height
        ax = fig.add_axes((col * cell_w + 4 / width, bottom, cell_w - 8 / width, (CELL - 6) / height))
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(color=colour, linewidth=3 if colour == WRONG else 0.5)
        ax.text(0.5, -0.04, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7.5, color=colour)
    return fig
