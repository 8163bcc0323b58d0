"""The accuracy gate every int8 artifact passes: agreement with fp32, and accuracy, on held-out images.

The gate compares the candidate's top-1 class with the fp32 checkpoint's on images that
calibration never saw; where the images have labels it also compares both accuracies.
Defaults: agreement >= 99% and an accuracy drop of at most 1 point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 32  # gate inputs per run: bounded memory at any image size


@dataclass(frozen=True)
class GateData:
    """The held-out images, preprocessed once, with the fp32 checkpoint's logits on them."""

    inputs: np.ndarray  # (N, 3, crop, crop) float32
    labels: np.ndarray  # (N,) int64; -1 where the class is unknown
    fp32_logits: np.ndarray  # (N, classes)
    description: str

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


@dataclass(frozen=True)
class GateResult:
    passed: bool
    agreement: float  # fraction of images where int8 and fp32 pick the same class
    accuracy_fp32: float | None  # on the labelled images; None when there are none
    accuracy_int8: float | None
    images: int
    labelled: int
    max_agreement_loss: float
    max_accuracy_drop: float
    logit_error: float  # mean squared logit difference / mean squared fp32 logit: ranks layers
    data: str

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_fp32 is None or self.accuracy_int8 is None:
            return None
        return self.accuracy_fp32 - self.accuracy_int8

    def summary(self) -> str:
        text = f"agreement {self.agreement:.2%} (>= {1 - self.max_agreement_loss:.2%})"
        if self.accuracy_drop is not None:
            text += (
                f", top-1 {self.accuracy_int8:.2%} vs fp32 {self.accuracy_fp32:.2%} "
                f"(drop {self.accuracy_drop * 100:+.2f} points, <= {self.max_accuracy_drop * 100:.2f})"
            )
        else:
            text += ", no labels: accuracy not measured"
        return f"{'PASS' if self.passed else 'FAIL'}: {text} on {self.images} held-out images"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "agreement": round(self.agreement, 6),
            "accuracy_fp32": None if self.accuracy_fp32 is None else round(self.accuracy_fp32, 6),
            "accuracy_int8": None if self.accuracy_int8 is None else round(self.accuracy_int8, 6),
            "images": self.images,
            "labelled_images": self.labelled,
            "max_agreement_loss": self.max_agreement_loss,
            "max_accuracy_drop": self.max_accuracy_drop,
            "data": self.data,
        }


def run_artifact(path: Path, inputs: np.ndarray, backend: str) -> np.ndarray:
    """Logits of an artifact through the runtime's own `backend` (what alexnet-run runs), BATCH inputs per call."""
    import runtime

    with runtime.load(path, backend=backend, device="cpu") as predictor:
        starts = gate_progress(range(0, len(inputs), BATCH), f"gate: {path.name}")
        return np.concatenate([predictor.predict_logits(inputs[i : i + BATCH]) for i in starts])


def gate_progress(batches: range, desc: str):
    """`batches` with a progress bar on stderr, on a terminal only: a gate run of a full-size model takes seconds."""
    from tqdm import tqdm

    return tqdm(batches, desc=desc, unit="batch", leave=False, disable=None)


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of an ONNX file through onnxruntime, the session alexnet-run uses."""
    return run_artifact(path, inputs, "onnxruntime")


def judge(data: GateData, logits: np.ndarray, *, max_agreement_loss: float, max_accuracy_drop: float) -> GateResult:
    """Compare a candidate's logits with fp32's on the gate images."""
    ours, theirs = logits.argmax(1), data.fp32_logits.argmax(1)
    agreement = float((ours == theirs).mean())
    labelled = data.labelled
    accuracy_fp32 = accuracy_int8 = None
    if labelled.any():
        accuracy_fp32 = float((theirs[labelled] == data.labels[labelled]).mean())
        accuracy_int8 = float((ours[labelled] == data.labels[labelled]).mean())
    finite = bool(np.isfinite(logits).all())
    scale = float(np.mean(data.fp32_logits.astype(np.float64) ** 2)) or 1.0
    error = float(np.mean((logits.astype(np.float64) - data.fp32_logits) ** 2)) / scale if finite else float("inf")
    passed = finite and agreement >= 1.0 - max_agreement_loss - 1e-12
    if accuracy_fp32 is not None:
        passed = passed and accuracy_fp32 - accuracy_int8 <= max_accuracy_drop + 1e-12
    return GateResult(
        passed=passed,
        agreement=agreement,
        accuracy_fp32=accuracy_fp32,
        accuracy_int8=accuracy_int8,
        images=len(ours),
        labelled=int(labelled.sum()),
        max_agreement_loss=max_agreement_loss,
        max_accuracy_drop=max_accuracy_drop,
        logit_error=error,
        data=data.description,
    )
