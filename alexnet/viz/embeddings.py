"""Penultimate-layer embeddings of a split, projected to 2-D and coloured by class.

`extract_embeddings` keeps the raw vectors (dataset order) for downstream use; PCA is numpy's
SVD of the centred vectors; t-SNE is scikit-learn's (the [viz] extra), imported only when asked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alexnet.data import UnwrappedLoader
from alexnet.layers import capture
from alexnet.model import AlexNet
from alexnet.plots import figure_pixels
from runtime.errors import DeployError

METHODS = ("pca", "tsne")
SIZE = (1000, 800)  # pixels
MAX_TSNE_SAMPLES = 20_000  # t-SNE's time and memory grow with N^2 (exact) / N log N (Barnes-Hut)


class ProjectionError(DeployError, ValueError):
    """The embeddings cannot be projected (too few samples, t-SNE not installed)."""


def extract_embeddings(
    model: AlexNet, dataset: Dataset, layer: str, *, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, F) float32, labels (N,) int64) of `dataset` at `layer`, in dataset order."""
    from tqdm import tqdm

    model.eval()
    vectors, labels = [], []
    loader = UnwrappedLoader(DataLoader(dataset, batch_size=batch_size))
    with capture(model, [layer]) as store, torch.inference_mode():
        for images, targets in tqdm(
            loader, desc=f"embedding ({layer})", unit="batch", disable=not progress, leave=False
        ):
            model(images)
            vectors.append(store[layer].flatten(1).numpy())  # (B, F): conv maps are flattened C*H*W
            labels.append(targets.numpy())
    if not vectors:
        raise ProjectionError("the split has no images")
    return np.concatenate(vectors).astype(np.float32), np.concatenate(labels).astype(np.int64)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 2), explained variance ratio (2,)): the top two principal components."""
    if len(vectors) < 2:
        raise ProjectionError(f"a projection needs at least 2 images, got {len(vectors)}")
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    # SVD of the (N, F) matrix; F may be 4096, N a few thousand: economy size, no F x F covariance
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    if points.shape[1] < 2:  # N == 2 leaves one component of a 1-D point set
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    variance = singular**2
    ratio = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return points.astype(np.float32), np.pad(ratio, (0, 2 - len(ratio)))


def require_tsne() -> None:
    """ProjectionError, one line naming the extra, when scikit-learn is not installed."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise ProjectionError(
            "--method tsne needs scikit-learn: pip install 'alexnet-deploy[viz]' (or use --method pca)"
        )


def tsne_2d(vectors: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE points (scikit-learn, PCA-initialized, perplexity at most (N - 1) / 3)."""
    require_tsne()
    from sklearn.manifold import TSNE

    if not 4 <= len(vectors) <= MAX_TSNE_SAMPLES:
        raise ProjectionError(f"t-SNE takes 4 to {MAX_TSNE_SAMPLES:,} images, got {len(vectors)}")
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(vectors.astype(np.float64)).astype(np.float32)


def embeddings_figure(points: np.ndarray, labels: np.ndarray, class_names: list[str], title: str):
    """A scatter plot of `points` (N, 2), one colour and legend entry per class present."""
    fig = figure_pixels(*SIZE)
    ax = fig.subplots()
    cmap = _colours(len(class_names))
    for index, name in enumerate(class_names):
        chosen = labels == index
        if chosen.any():
            ax.scatter(points[chosen, 0], points[chosen, 1], s=12, color=cmap(index), label=f"{name} ({chosen.sum()})")
    ax.set(title=title, xticks=[], yticks=[])
    if len(class_names) <= 30:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=1.5)
    return fig


def _colours(count: int):
    from matplotlib import colormaps

    return colormaps["tab10" if count <= 10 else "tab20" if count <= 20 else "turbo"].resampled(max(count, 2))
