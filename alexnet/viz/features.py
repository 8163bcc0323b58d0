"""Feature maps of one image at chosen layers, with the preprocessed input first.

Each layer shows its `max_channels` most active channels (highest mean activation; the rest
of a ReLU layer is often all zeros), each map scaled to the layer's own maximum so maps of one
layer compare with each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from alexnet.layers import capture
from alexnet.model import AlexNet
from alexnet.plots import figure_pixels
from alexnet.viz.grid import mosaic

WIDTH = 1200  # pixels
COLUMNS = 16
ROW_HEIGHT = 66  # pixels per row of maps
INPUT_HEIGHT = 220
TITLE_HEIGHT = 30


@dataclass(frozen=True)
class LayerMaps:
    name: str
    shape: tuple[int, int, int]  # the layer's whole activation (C, H, W)
    channels: np.ndarray  # (K,) indices of the channels shown, most active first
    maps: np.ndarray  # (K, H, W) float32 activations of those channels

    def to_dict(self) -> dict:
        return {
            "layer": self.name,
            "shape": list(self.shape),
            "channels": self.channels.tolist(),
            "mean_activation": self.maps.mean(axis=(1, 2)).round(6).tolist(),
            "max_activation": float(self.maps.max(initial=0.0)),
        }


def feature_maps(model: AlexNet, image: np.ndarray, layers: list[str], max_channels: int) -> list[LayerMaps]:
    """`image` (3, S, S) float32 model input through `model` (eval mode); the maps of each of `layers`."""
    model.eval()
    with capture(model, layers) as store, torch.inference_mode():
        model(torch.from_numpy(np.ascontiguousarray(image, np.float32))[None])
    result = []
    for name in layers:
        activation = store[name][0].numpy()  # (C, H, W)
        means = activation.mean(axis=(1, 2))
        order = np.argsort(-means, kind="stable")[:max_channels]
        result.append(LayerMaps(name, tuple(activation.shape), order, activation[order]))
    return result


def _rows(layer: LayerMaps) -> int:
    return math.ceil(len(layer.channels) / COLUMNS)


def features_size(layers: list[LayerMaps]) -> tuple[int, int]:
    """(width, height) in pixels of the picture of `layers`."""
    return WIDTH, INPUT_HEIGHT + sum(TITLE_HEIGHT + ROW_HEIGHT * _rows(layer) for layer in layers) + 10


def features_figure(input_rgb: np.ndarray, layers: list[LayerMaps], title: str):
    """The input (H, W, 3) uint8, then one mosaic per layer."""
    width, height = features_size(layers)
    fig = figure_pixels(width, height)
    heights = [INPUT_HEIGHT - TITLE_HEIGHT] + [ROW_HEIGHT * _rows(layer) for layer in layers]
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, top=1 - TITLE_HEIGHT / height, bottom=5 / height)
    grid.update(hspace=TITLE_HEIGHT * len(heights) / sum(heights))
    ax = fig.add_subplot(grid[0])
    ax.imshow(input_rgb, interpolation="nearest")
    ax.set_title(f"{title}: the model's input, {input_rgb.shape[1]}x{input_rgb.shape[0]}", fontsize=10)
    ax.axis("off")
    for index, layer in enumerate(layers, start=1):
        ax = fig.add_subplot(grid[index])
        top = float(layer.maps.max(initial=0.0)) or 1.0
        tiles = mosaic(layer.maps / top, min(COLUMNS, len(layer.channels)), fill=np.nan)  # NaN: the white gaps
        ax.imshow(tiles, cmap=_cmap(), vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        c, h, w = layer.shape
        ax.set_title(
            f"{layer.name}: {c}x{h}x{w}, the {len(layer.channels)} most active channels (max {top:.3g})", fontsize=9
        )
        ax.axis("off")
    return fig


def _cmap():
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="white")
