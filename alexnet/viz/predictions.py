"""Which images to show in a prediction grid, and what each caption says.

The model side is any `logits_fn` (runtime.load: a checkpoint or any exported artifact), so the
grid of an int8 ONNX model shows what that model gets wrong, not what its checkpoint does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch.utils.data import Dataset, Subset

from alexnet.evaluate import LogitsFn, check_class_count, collect_logits
from runtime.predictor import softmax


@dataclass(frozen=True)
class PredictionRow:
    index: int  # position in the evaluation split
    source: str  # file path, or "<data> <split> #<index>" for in-memory sets
    true: str
    predicted: str
    confidence: float  # softmax probability of the predicted class
    correct: bool

    def caption(self) -> str:
        first = f"{self.predicted[:18]} {self.confidence:.0%}"
        return first if self.correct else f"{first}\ntrue: {self.true[:18]}"

    def to_dict(self) -> dict:
        return asdict(self)


def evenly_spaced(count: int, n: int) -> list[int]:
    """`n` indices spread evenly over range(count) (all of them when count <= n), ascending."""
    if count <= n:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, n)})


def predict_rows(
    logits_fn: LogitsFn,
    dataset: Dataset,
    class_names: list[str],
    *,
    n: int,
    only_wrong: bool,
    sources: list[str],
    batch_size: int = 64,
) -> tuple[list[PredictionRow], dict]:
    """The rows to draw and a summary {"images", "evaluated", "wrong"}.

    Without `only_wrong`, `n` images spread evenly over the split are predicted. With it, the
    whole split is predicted and the grid shows its misclassified images (`n` of them, spread
    evenly, when there are more): `summary["wrong"]` counts them all.
    """
    chosen = list(range(len(dataset))) if only_wrong else evenly_spaced(len(dataset), n)
    logits, labels, _, _ = collect_logits(logits_fn, Subset(dataset, chosen), batch_size=batch_size)
    check_class_count(logits, class_names)
    rows = [
        _row(index, sources[index], scores, int(label), class_names)
        for index, scores, label in zip(chosen, logits, labels)
    ]
    wrong = [row for row in rows if not row.correct]
    summary = {"images": len(dataset), "evaluated": len(rows), "wrong": len(wrong)}
    if only_wrong:
        rows = [wrong[i] for i in evenly_spaced(len(wrong), n)]
    return rows, summary


def _row(index: int, source: str, logits: np.ndarray, label: int, class_names: list[str]) -> PredictionRow:
    probabilities = softmax(logits[None])[0]
    predicted = int(np.argmax(logits))
    return PredictionRow(
        index=index,
        source=source,
        true=class_names[label],
        predicted=class_names[predicted],
        confidence=float(probabilities[predicted]),
        correct=predicted == label,
    )
