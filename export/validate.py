"""Check an exported artifact against the PyTorch model it came from.

TorchScript and ONNX are loaded back with their own runtime (`runtime.load`) and compared
with the fp32 PyTorch model on random inputs and on real preprocessed images (the synthetic
validation set, or the user's images). Core ML predicts only on macOS; elsewhere the
package runs on the Core ML reference evaluator (runtime.mlprogram: numpy, op by op) and is
also checked structurally (export/coreml_checks.py).

Tolerances (on logits): fp32 artifacts pass at max |diff| <= 1e-4; fp16 ones at
max |diff| <= 1e-2 * max(1, max |logit|) with top-1 agreement >= 99%; int8 ones at top-1
agreement >= 99% and finite logits (max |diff| is reported, gated only by an explicit atol).
The reported relative difference is per input, max |diff| / max |logit|, then the worst input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.checkpoint import Checkpoint
from export.common import ExportError
from export.coreml_checks import (  # noqa: F401 (the structural checks' names, imported from here too)
    check_weights,
    coreml_problems,
    expected_weights,
    inspect_package,
    load_program,
    weight_problems,
)
from export.source import Source, as_source
from runtime.integrity import IntegrityError, verify_weights
from runtime.metadata import ArtifactMetadata
from runtime.preprocess import IMAGE_SUFFIXES, normalize, preprocess_image

FP32_ATOL = 1e-4
FP16_RTOL = 1e-2  # of the logits' scale
MIN_TOP1_FP16 = 0.99
MIN_TOP1_INT8 = 0.99


@dataclass
class ValidationResult:
    fmt: str
    passed: bool
    max_abs: float | None = None
    max_rel: float | None = None
    top1: float | None = None  # fraction of inputs with the same top-1 class
    atol: float | None = None
    count: int = 0
    note: str = ""

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        if self.max_abs is None:
            return f"{self.fmt}: {verdict} ({self.note})"
        gate = "not gated" if self.atol is None else f"atol {self.atol:.1e}"  # int8: no default atol
        return (
            f"{self.fmt}: {verdict}  max abs diff {self.max_abs:.2e} ({gate}), max rel diff "
            f"{self.max_rel:.2e}, top-1 agreement {self.top1:.1%} on {self.count} inputs"
            + (f"; {self.note}" if self.note else "")
        )


def validation_inputs(
    metadata: ArtifactMetadata, data: str | Path | None = None, *, random: int = 8, images: int = 16, seed: int = 0
) -> np.ndarray:
    """(random + images, 3, S, S) float32: random-pixel images, then real images, all preprocessed.

    The random inputs are uniform 8-bit pixels, normalized: a Core ML image input receives
    them back as exactly these pixels (Gaussian noise would be clipped to 0..255 there).
    """
    spec, size = metadata.preprocess, metadata.input_shape[2]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (random, size, size, 3), dtype=np.uint8)  # (N, H, W, 3)
    arrays = [normalize(Image.fromarray(p, "RGB"), spec) for p in pixels]
    if data is not None:
        paths = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:images]
        if not paths:
            raise ExportError(f"--data {data}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found there")
        arrays += [preprocess_image(p, spec) for p in paths]
    elif images:
        from alexnet.synthetic import render_synthetic

        arrays += [
            preprocess_image(render_synthetic(i, split="val", image_size=spec.resize, seed=seed)[0], spec)
            for i in range(images)
        ]
    return np.stack(arrays).astype(np.float32)


def compare(fmt: str, got: np.ndarray, ref: np.ndarray, precision: str, atol: float | None = None) -> ValidationResult:
    """Logits `got` (N, C) from the artifact against the reference `ref` (N, C)."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = max(1.0, float(np.abs(ref).max()))
    if precision == "int8":
        return _compare_int8(fmt, got, ref, diff, atol)
    if atol is None:
        atol = FP32_ATOL if precision == "fp32" else FP16_RTOL * scale
    top1 = float(np.mean(got.argmax(1) == ref.argmax(1)))
    max_abs = float(diff.max())
    # Relative to each input's largest |logit|: an elementwise ratio explodes on logits near zero.
    max_rel = float((diff.max(1) / np.maximum(np.abs(ref).max(1), 1e-12)).max())
    passed = max_abs <= atol and (precision == "fp32" or top1 >= MIN_TOP1_FP16)
    return ValidationResult(fmt, passed, max_abs, max_rel, top1, atol, len(ref))


def _compare_int8(fmt: str, got: np.ndarray, ref: np.ndarray, diff: np.ndarray, atol: float | None) -> ValidationResult:
    """int8 weights move every logit by more than any fixed tolerance could predict; what must
    hold is the decision (top-1 agreement) and finite outputs. An explicit `atol` still gates."""
    top1 = float(np.mean(got.argmax(1) == ref.argmax(1)))
    max_abs = float(diff.max())
    max_rel = float((diff.max(1) / np.maximum(np.abs(ref).max(1), 1e-12)).max())
    finite = bool(np.isfinite(got).all())
    passed = finite and top1 >= MIN_TOP1_INT8 and (atol is None or max_abs <= atol)
    note = "" if finite else "NaN or inf in the artifact's logits"
    return ValidationResult(fmt, passed, max_abs, max_rel, top1, atol, len(ref), note)


def reference_logits(checkpoint: Checkpoint, batch: np.ndarray) -> np.ndarray:
    model = checkpoint.build_model()
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def validate_artifact(
    path: str | Path,
    checkpoint: str | Path | Source,
    *,
    atol: float | None = None,
    data: str | Path | None = None,
) -> ValidationResult:
    """Load `path` back with its runtime and compare it with the checkpoint's PyTorch model
    (`checkpoint`: its path, or the `Source` the export already read)."""
    import runtime

    path = Path(path)
    checkpoint = as_source(checkpoint).checkpoint
    # The weights hash is checked below as one of the results, so that the numbers are compared too.
    with runtime.load(path, device="cpu", verify=False) as predictor:  # off macOS, a .mlpackage: coreml-reference
        metadata = predictor.metadata
        batch = validation_inputs(metadata, data)
        got = predictor.predict_logits(batch)
        evaluator = predictor.backend_name
    result = compare(metadata.format, got, reference_logits(checkpoint, batch), metadata.precision, atol)
    if evaluator == "coreml-reference":
        structural = check_coreml_package(path, checkpoint)
        result.passed = result.passed and structural.passed
        result.note = "predicted by the Core ML reference evaluator (numpy); " + structural.note
    try:
        verify_weights(path, metadata.format, metadata)
    except IntegrityError as exc:
        result.passed = False
        result.note = "; ".join(filter(None, (str(exc), result.note)))
    return result


def check_coreml_package(path: Path, checkpoint: Checkpoint) -> ValidationResult:
    """Structural checks of a .mlpackage (spec, input/outputs, labels, metadata, weights)."""
    problems, report = inspect_package(path, checkpoint)
    note = "spec, input/outputs, labels, metadata and weights checked"
    if report is not None and report.compressed:
        note += f"; int8 weights within {report.worst_steps:.2f} quantization steps of the checkpoint's (limit 1)"
    return ValidationResult("coreml", not problems, note="; ".join(problems) if problems else note)
