"""Classification metrics from logits and labels (numpy only).

Independent of where the logits come from: a PyTorch model, ONNX Runtime, Core ML.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood; logits (N, C) float, labels (N,) int."""
    if len(labels) == 0:
        return float("nan")
    return float(-log_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels].mean())


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits (k is capped at C)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class; 0 where undefined (no predictions / no samples)."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_report(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Every number evaluation reports, as plain Python types (JSON-ready)."""
    labels = np.asarray(labels, dtype=np.int64)
    matrix = confusion_matrix(logits.argmax(axis=1), labels, len(class_names))
    scores = per_class_scores(matrix)
    present = scores["support"] > 0  # macro averages over classes that occur
    per_class = [
        {
            "class": name,
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i, name in enumerate(class_names)
    ]
    return {
        "samples": int(len(labels)),
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "loss": cross_entropy(logits, labels),
        "macro_precision": float(scores["precision"][present].mean()) if present.any() else 0.0,
        "macro_recall": float(scores["recall"][present].mean()) if present.any() else 0.0,
        "macro_f1": float(scores["f1"][present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def format_confusion(matrix: np.ndarray, class_names: list[str], width: int = 6) -> str:
    """A compact text table; class names are abbreviated to fit the columns."""
    short = [name[: width - 1] for name in class_names]
    head = " " * width + "".join(f"{name:>{width}}" for name in short)
    rows = [f"{short[i]:<{width}}" + "".join(f"{int(v):>{width}}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join(["rows: true class, columns: predicted", head, *rows])
