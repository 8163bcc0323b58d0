"""Evaluate any logits source (a checkpoint or an exported artifact) on a labelled split.

The model side is a function `logits_fn(batch (N, 3, H, W) float32) -> (N, classes)`;
runtime.load gives one for checkpoints (PyTorch backend) and for .onnx/.pt/.mlpackage alike,
so the accuracy a user sees is the accuracy of what they ship.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from alexnet.metrics import classification_report
from runtime.errors import DeployError
from runtime.pipeline import default_workers, ordered_map

LogitsFn = Callable[[np.ndarray], np.ndarray]


class EvalError(DeployError, ValueError):
    """A model and a data set do not fit together (other classes, another number of outputs)."""


class RelabeledDataset(Dataset):
    """`dataset` with each label translated through `mapping` (data's class index -> model's),
    for data that lists the model's classes in another order."""

    def __init__(self, dataset: Dataset, mapping: Sequence[int]) -> None:
        self.dataset, self.mapping = dataset, list(mapping)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        return image, self.mapping[int(label)]


def collect_logits(
    logits_fn: LogitsFn, dataset: Dataset, *, batch_size: int = 64, workers: int | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Every image of `dataset` through `logits_fn`, in dataset order; images decoded on `workers`
    threads (runtime.pipeline; None: its default) while the model runs the previous batch.

    Returns (logits (N, classes) float32, labels (N,) int64, total seconds, seconds in the model).
    """
    from tqdm import tqdm

    workers = default_workers() if workers is None else workers
    items = ordered_map(dataset.__getitem__, range(len(dataset)), workers=workers, ahead=batch_size + workers)
    logits, labels = [], []
    model_seconds = 0.0
    start = time.perf_counter()
    starts = range(0, len(dataset), batch_size)
    try:
        for _ in tqdm(starts, desc="evaluating", unit="batch", disable=not progress, leave=False):
            part = list(itertools.islice(items, batch_size))
            batch = np.stack([np.asarray(image, np.float32) for image, _ in part])
            tick = time.perf_counter()
            logits.append(np.asarray(logits_fn(batch), dtype=np.float32))
            model_seconds += time.perf_counter() - tick
            labels.append(np.asarray([label for _, label in part]))
    finally:
        items.close()
    total_seconds = time.perf_counter() - start
    all_logits = np.concatenate(logits) if logits else np.zeros((0, 0), np.float32)
    all_labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
    return all_logits, all_labels, total_seconds, model_seconds


def check_class_count(logits: np.ndarray, class_names: list[str]) -> None:
    """EvalError when the model's outputs are not one per class of the data."""
    if len(logits) and logits.shape[1] != len(class_names):
        raise EvalError(f"the model has {logits.shape[1]} outputs but the data has {len(class_names)} classes")


def evaluate(
    logits_fn: LogitsFn,
    dataset: Dataset,
    class_names: list[str],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Run every image of `dataset` through `logits_fn`; return the classification report plus speed."""
    all_logits, all_labels, total_seconds, model_seconds = collect_logits(
        logits_fn, dataset, batch_size=batch_size, workers=workers, progress=progress
    )
    check_class_count(all_logits, class_names)
    if not len(all_logits):
        all_logits = np.zeros((0, len(class_names)), np.float32)
    report = classification_report(all_logits, all_labels, class_names)
    report["images_per_s"] = len(all_labels) / total_seconds if total_seconds else 0.0  # data + model
    report["model_images_per_s"] = len(all_labels) / model_seconds if model_seconds else 0.0
    return report


def format_report(report: dict, class_names: list[str]) -> str:
    lines = [
        f"samples {report['samples']}  top-1 {report['top1']:.4f}  top-5 {report['top5']:.4f}  loss {report['loss']:.4f}  "
        f"{report['images_per_s']:.0f} img/s ({report['model_images_per_s']:.0f} in the model)",
        f"macro precision {report['macro_precision']:.4f}  recall {report['macro_recall']:.4f}  f1 {report['macro_f1']:.4f}",
        f"{'class':<24}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    for row in report["per_class"]:
        lines.append(
            f"{row['class'][:23]:<24}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>9}"
        )
    return "\n".join(lines)


def match_classes(
    dataset: Any, data_names: list[str], model_names: list[str], *, model: str, data: str, note: Callable[[str], None]
) -> Any:
    """`dataset` labelled with the model's class indices: the same classes in another order are
    mapped by name (and `note` says so); other classes are an error naming the differences."""
    if data_names == model_names:
        return dataset
    if sorted(data_names) == sorted(model_names) and len(set(data_names)) == len(data_names):
        index = {name: i for i, name in enumerate(model_names)}
        note(
            f"note: {data} has the model's {len(model_names)} classes in another order; "
            "its labels are mapped to the model's classes by name"
        )
        return RelabeledDataset(dataset, [index[name] for name in data_names])
    only_model = [n for n in model_names if n not in set(data_names)]
    only_data = [n for n in data_names if n not in set(model_names)]
    differences = "; ".join(
        f"only in {where}: {_names(names)}"
        for where, names in (("the model", only_model), ("the data", only_data))
        if names
    )
    raise EvalError(
        f"{model} was trained on {len(model_names)} classes but {data} has {len(data_names)}: "
        f"{differences or 'a class name is repeated'}"
    )


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
