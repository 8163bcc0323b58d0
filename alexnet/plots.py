"""Pictures: training curves, the confusion matrix, and the figure helpers alexnet/viz draws with.

matplotlib `Figure` objects, never pyplot: no global backend switch and no figure registry to
close, so drawing changes nothing for an application that also uses matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.outputs import atomic_write

DPI = 100  # figures are sized in inches x DPI: a figure of (w, h) inches is a PNG of w*DPI x h*DPI pixels


def new_figure(**kwargs):
    """A matplotlib Figure at DPI, outside pyplot (nothing process-wide is touched)."""
    from matplotlib.figure import Figure

    return Figure(dpi=DPI, **kwargs)


def figure_pixels(width: int, height: int):
    """A figure that saves as a PNG of exactly width x height pixels."""
    return new_figure(figsize=(width / DPI, height / DPI))


def save_curves(history: list[dict], path: str | Path) -> None:
    """Loss and top-1 accuracy per epoch, train and val, side by side."""
    epochs = [row["epoch"] for row in history]
    fig = new_figure(figsize=(10, 4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], "o-", label="val")
    loss_ax.set(title="loss", xlabel="epoch")
    acc_ax.plot(epochs, [r["train_top1"] for r in history], "o-", label="train top-1")
    acc_ax.plot(epochs, [r["val_top1"] for r in history], "o-", label="val top-1")
    acc_ax.plot(epochs, [r["val_top5"] for r in history], "--", label="val top-5")
    acc_ax.set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    save_png(fig, path)


def save_png(fig, path: str | Path, *, tight: bool = True, palette: int | None = None) -> None:
    """Write `fig` as PNG atomically (runtime.outputs); its pixel size is figsize x DPI, never cropped.
    palette: reduce to that many colours (a palette PNG, a fraction of the size: pictures for docs)."""
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda tmp: _write_png(fig, tmp, palette))


def _write_png(fig, path: str, palette: int | None) -> None:
    if palette is None:
        fig.savefig(path, format="png", dpi=DPI)
        return
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    with Image.open(buffer) as image:
        reduced = image.convert("RGB").quantize(colors=palette, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, format="PNG", optimize=True)


def save_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path) -> None:
    """Row-normalized heat map with the counts written in each cell."""
    n = len(class_names)
    size = min(4 + 0.45 * n, 30)
    fig = new_figure(figsize=(size, size))
    ax = fig.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    ax.imshow(np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rows[i, 0] and value / rows[i, 0] > 0.5 else "black",
                )
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    save_png(fig, path)
