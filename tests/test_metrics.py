import numpy as np
import pytest

from alexnet.metrics import (
    classification_report,
    confusion_matrix,
    cross_entropy,
    format_confusion,
    per_class_scores,
    topk_accuracy,
)

LOGITS = np.array(
    [
        [5.0, 1.0, 0.0, 2.0],  # top-1 class 0, top-2 {0, 3}
        [0.0, 3.0, 2.0, 1.0],  # top-1 class 1, top-2 {1, 2}
        [1.0, 0.0, 4.0, 3.0],  # top-1 class 2, top-2 {2, 3}
        [2.0, 1.0, 0.0, 0.5],  # top-1 class 0, top-2 {0, 1}
    ]
)
LABELS = np.array([0, 2, 2, 1])


def test_topk_by_hand():
    assert topk_accuracy(LOGITS, LABELS, 1) == 0.5  # rows 0 and 2
    assert topk_accuracy(LOGITS, LABELS, 2) == 1.0  # row 1 has 2 in its top-2, row 3 has 1
    assert topk_accuracy(LOGITS, LABELS, 10) == 1.0  # k capped at the class count


def test_confusion_with_an_absent_class():
    matrix = confusion_matrix(LOGITS.argmax(1), LABELS, 4)
    # rows = true: 0 -> 0; 2 -> 1 and 2; 1 -> 0; class 3 never occurs
    assert matrix.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    scores = per_class_scores(matrix)
    np.testing.assert_allclose(scores["precision"], [0.5, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(scores["recall"], [1.0, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 0.0, 2 / 3, 0.0])
    assert scores["support"].tolist() == [1, 1, 2, 0]


def test_report_macro_averages_skip_absent_classes():
    report = classification_report(LOGITS, LABELS, ["a", "b", "c", "d"])
    assert report["samples"] == 4 and report["top1"] == 0.5
    assert report["macro_recall"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert report["per_class"][3] == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["confusion_matrix"][2] == [0, 1, 1, 0]


def test_cross_entropy_by_hand():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    assert cross_entropy(logits, np.array([0, 0])) == pytest.approx((np.log(2) + np.log(4 / 3)) / 2)


def test_format_confusion():
    text = format_confusion(np.array([[3, 1], [0, 2]]), ["circle", "square"])
    assert "rows: true class" in text and "circl" in text.splitlines()[1]
    assert text.splitlines()[2].split() == ["circl", "3", "1"]
