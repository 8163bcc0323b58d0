"""Check an exported artifact against the PyTorch model it came from.

TorchScript and ONNX are loaded back with their own runtime (`runtime.load`) and compared
with the fp32 PyTorch model on random inputs and on real preprocessed images (the synthetic
validation set, or the user's images). Core ML predicts only on macOS; elsewhere the
package is checked structurally: spec loads, input/outputs, labels, metadata, and weights
equal to the checkpoint's within fp16 rounding.

Tolerances (on logits): fp32 artifacts pass at max |diff| <= 1e-4; fp16 ones at
max |diff| <= 1e-2 * max(1, max |logit|) with top-1 agreement >= 99%. The reported
relative difference is per input, max |diff| / max |logit|, then the worst input.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alexnet.checkpoint import Checkpoint, load_checkpoint
from export.common import ExportError, first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.preprocess import IMAGE_SUFFIXES, normalize, preprocess_image

FP32_ATOL = 1e-4
FP16_RTOL = 1e-2  # of the logits' scale
MIN_TOP1_FP16 = 0.99


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
        return (
            f"{self.fmt}: {verdict}  max abs diff {self.max_abs:.2e} (atol {self.atol:.1e}), max rel diff "
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
    if atol is None:
        atol = FP32_ATOL if precision == "fp32" else FP16_RTOL * scale
    top1 = float(np.mean(got.argmax(1) == ref.argmax(1)))
    max_abs = float(diff.max())
    # Relative to each input's largest |logit|: an elementwise ratio explodes on logits near zero.
    max_rel = float((diff.max(1) / np.maximum(np.abs(ref).max(1), 1e-12)).max())
    passed = max_abs <= atol and (precision == "fp32" or top1 >= MIN_TOP1_FP16)
    return ValidationResult(fmt, passed, max_abs, max_rel, top1, atol, len(ref))


def reference_logits(checkpoint: Checkpoint, batch: np.ndarray) -> np.ndarray:
    model = checkpoint.build_model()
    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def validate_artifact(
    path: str | Path, checkpoint_path: str | Path, *, atol: float | None = None, data: str | Path | None = None
) -> ValidationResult:
    """Load `path` back with its runtime and compare it with the checkpoint's PyTorch model."""
    import runtime

    path = Path(path)
    checkpoint = load_checkpoint(checkpoint_path)
    if path.suffix == ".mlpackage" and sys.platform != "darwin":
        return check_coreml_package(path, checkpoint)
    with runtime.load(path, device="cpu") as predictor:
        metadata = predictor.metadata
        batch = validation_inputs(metadata, data)
        got = predictor.predict_logits(batch)
    result = compare(metadata.format, got, reference_logits(checkpoint, batch), metadata.precision, atol)
    return result


def check_coreml_package(path: Path, checkpoint: Checkpoint) -> ValidationResult:
    """Structural checks of a .mlpackage where Core ML cannot predict (Linux, Windows)."""
    problems = coreml_problems(path, checkpoint)
    note = (
        "; ".join(problems)
        if problems
        else ("numerical validation needs macOS; spec, input/outputs, labels, metadata and weights checked")
    )
    return ValidationResult("coreml", not problems, note=note)


def coreml_problems(path: Path, checkpoint: Checkpoint) -> list[str]:
    from export.to_coreml import INPUT_NAME, LABEL_NAME, OUTPUT_NAME, _import_coremltools

    ct = _import_coremltools()
    try:
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
    except Exception as exc:  # coremltools raises bare exceptions for damaged packages
        return [f"spec does not load: {first_line(exc)}"]
    problems = []
    description = spec.description
    text = description.metadata.userDefined.get(METADATA_KEY)
    if not text:
        return [f"no {METADATA_KEY} metadata"]
    metadata = ArtifactMetadata.from_json(text)
    if list(metadata.class_names) != list(checkpoint.class_names):
        problems.append("metadata class names differ from the checkpoint's")
    if [i.name for i in description.input] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in description.input]}, expected [{INPUT_NAME!r}]")
    if {o.name for o in description.output} != {LABEL_NAME, OUTPUT_NAME}:
        problems.append(f"outputs are {[o.name for o in description.output]}, expected {LABEL_NAME} and {OUTPUT_NAME}")
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    program = load_program(spec, spec.specificationVersion, mlmodel.weights_dir)
    labels = _class_labels(program)
    if labels != list(checkpoint.class_names):
        problems.append(f"classifier labels {labels[:3]}... differ from the checkpoint's class names")
    image_input = description.input[0].type.WhichOneof("Type") == "imageType"
    problems += weight_problems(program, checkpoint, image_input)
    return problems


def _class_labels(program: Any) -> list[str]:
    """An ML Program classifier keeps its labels in the `classify` op's `classes` input."""
    for op in program.functions["main"].operations:
        if op.op_type == "classify":
            return [str(c) for c in op.inputs["classes"].val]
    return []


def weight_problems(program: Any, checkpoint: Checkpoint, image_input: bool) -> list[str]:
    """Every non-zero checkpoint tensor must be a const of the program, equal within fp16 rounding."""
    from export.to_coreml import fold_std

    consts = {op.name: op.outputs[0].val for op in program.functions["main"].operations if op.op_type == "const"}
    model = checkpoint.build_model()
    if image_input:
        model = fold_std(model, checkpoint.preprocess.std)  # the package holds conv1 / std
    problems = []
    for name, tensor in model.state_dict().items():
        expected = tensor.numpy()
        key = name.replace(".", "_")
        found = next((v for k, v in consts.items() if re.fullmatch(rf"{re.escape(key)}(_to_fp16)?", k)), None)
        if found is None:
            if np.any(expected):  # the optimizer drops all-zero biases into the op
                problems.append(f"weight {name} is missing from the package")
            continue
        if found.shape != expected.shape or not np.allclose(found.astype(np.float32), expected, rtol=2**-10, atol=1e-7):
            problems.append(f"weight {name} differs from the checkpoint beyond fp16 rounding")
    return problems
