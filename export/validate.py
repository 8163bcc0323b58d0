"""Check an exported artifact against the PyTorch model it came from.

TorchScript and ONNX are loaded back with their own runtime (`runtime.load`) and compared
with the fp32 PyTorch model on random inputs and on real preprocessed images (the synthetic
validation set, or the user's images). Core ML predicts only on macOS; elsewhere the
package is checked structurally: spec loads, input/outputs, labels, metadata, and weights
equal to the checkpoint's within fp16 rounding; an int8 package's compressed weights must
dequantize to within one quantization step (their channel's scale) of the checkpoint's.

Tolerances (on logits): fp32 artifacts pass at max |diff| <= 1e-4; fp16 ones at
max |diff| <= 1e-2 * max(1, max |logit|) with top-1 agreement >= 99%; int8 ones at top-1
agreement >= 99% and finite logits (max |diff| is reported, gated only by an explicit atol).
The reported relative difference is per input, max |diff| / max |logit|, then the worst input.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
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
MIN_TOP1_INT8 = 0.99
FP16_SLACK = 2**-10  # relative: a weight rounded to fp16 on the way into the package, and again out
# Core ML's compressed-weight ops: iOS 16/17 packages hold the first, iOS 18 ones the second.
DEQUANTIZE_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


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
    problems, report = _inspect_package(path, checkpoint)
    note = "numerical validation needs macOS; spec, input/outputs, labels, metadata and weights checked"
    if report is not None and report.compressed:
        note += f"; int8 weights within {report.worst_steps:.2f} quantization steps of the checkpoint's (limit 1)"
    return ValidationResult("coreml", not problems, note="; ".join(problems) if problems else note)


def coreml_problems(path: Path, checkpoint: Checkpoint) -> list[str]:
    return _inspect_package(path, checkpoint)[0]


def _inspect_package(path: Path, checkpoint: Checkpoint) -> tuple[list[str], WeightReport | None]:
    from export.to_coreml import INPUT_NAME, LABEL_NAME, OUTPUT_NAME, _import_coremltools

    ct = _import_coremltools()
    try:
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
    except Exception as exc:  # coremltools raises bare exceptions for damaged packages
        return [f"spec does not load: {first_line(exc)}"], None
    problems = []
    description = spec.description
    text = description.metadata.userDefined.get(METADATA_KEY)
    if not text:
        return [f"no {METADATA_KEY} metadata"], None
    metadata = ArtifactMetadata.from_json(text)
    if list(metadata.class_names) != list(checkpoint.class_names):
        problems.append("metadata class names differ from the checkpoint's")
    if metadata.precision == "int8" and not metadata.quantization:
        problems.append("an int8 package without a quantization record in its metadata")
    if [i.name for i in description.input] != [INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in description.input]}, expected [{INPUT_NAME!r}]")
    if {o.name for o in description.output} != {LABEL_NAME, OUTPUT_NAME}:
        problems.append(f"outputs are {[o.name for o in description.output]}, expected {LABEL_NAME} and {OUTPUT_NAME}")
    program = load_program(mlmodel)
    labels = _class_labels(program)
    if labels != list(checkpoint.class_names):
        problems.append(f"classifier labels {labels[:3]}... differ from the checkpoint's class names")
    image_input = description.input[0].type.WhichOneof("Type") == "imageType"
    std = checkpoint.preprocess.std if image_input else None
    report = check_weights(program, expected_weights(checkpoint.build_model(), std), metadata.precision)
    return problems + report.problems, report


def load_program(mlmodel: Any) -> Any:
    """The MIL program of an ML Program `ct.models.MLModel`, constants (weights) included."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = mlmodel.get_spec()
    return load(spec, spec.specificationVersion, mlmodel.weights_dir)


def _class_labels(program: Any) -> list[str]:
    """An ML Program classifier keeps its labels in the `classify` op's `classes` input."""
    for op in program.functions["main"].operations:
        if op.op_type == "classify":
            return [str(c) for c in op.inputs["classes"].val]
    return []


def weight_problems(program: Any, checkpoint: Checkpoint, image_input: bool) -> list[str]:
    """Every non-zero checkpoint tensor must be a const of the program, equal within fp16 rounding
    (or, compressed, within one quantization step)."""
    std = checkpoint.preprocess.std if image_input else None
    return check_weights(program, expected_weights(checkpoint.build_model(), std)).problems


def expected_weights(model: torch.nn.Module, std: tuple[float, float, float] | None) -> dict[str, np.ndarray]:
    """`model`'s tensors as the package should hold them: conv1 / std for an image input."""
    from export.to_coreml import fold_std

    if std is not None:
        model = fold_std(model, std)
    return {name: tensor.numpy() for name, tensor in model.state_dict().items()}


@dataclass
class WeightReport:
    problems: list[str] = field(default_factory=list)
    compressed: int = 0  # weights stored as int8
    worst_steps: float = 0.0  # the largest |dequantized - checkpoint| / step over them


def check_weights(program: Any, expected: dict[str, np.ndarray], precision: str | None = None) -> WeightReport:
    """Compare the program's weights with `expected` (name -> array), by the checkpoint's names."""
    ops = program.functions["main"].operations
    consts = {op.name: op.outputs[0].val for op in ops if op.op_type == "const"}
    packed = {op.name: op for op in ops if op.op_type in DEQUANTIZE_OPS}
    report = WeightReport()
    for name, tensor in expected.items():
        key = re.escape(name.replace(".", "_"))
        op = _named(packed, rf"{key}(_to_fp16)?_quantized")
        if op is not None:
            _check_compressed(report, name, tensor, op, precision)
            continue
        if precision == "int8" and tensor.ndim >= 2:
            report.problems.append(f"weight {name} is not stored as int8 in an int8 package")
            continue
        found = _named(consts, rf"{key}(_to_fp16)?")
        if found is None:
            if np.any(tensor):  # the optimizer drops all-zero biases into the op
                report.problems.append(f"weight {name} is missing from the package")
            continue
        if found.shape != tensor.shape or not np.allclose(found.astype(np.float32), tensor, rtol=2**-10, atol=1e-7):
            report.problems.append(f"weight {name} differs from the checkpoint beyond fp16 rounding")
    return report


def _named(items: dict[str, Any], pattern: str) -> Any:
    return next((v for k, v in items.items() if re.fullmatch(pattern, k)), None)


def _check_compressed(report: WeightReport, name: str, expected: np.ndarray, op: Any, precision: str | None) -> None:
    if precision not in (None, "int8"):
        report.problems.append(f"weight {name} is compressed in a package whose metadata says {precision}")
        return
    values, step = dequantize(op)
    if values.shape != expected.shape:
        report.problems.append(
            f"weight {name} has shape {values.shape} in the package, {expected.shape} in the checkpoint"
        )
        return
    error = np.abs(values - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        # An all-zero channel has step 0 and, dequantized, error 0: 0 steps, not NaN.
        steps = np.where(error == 0, 0.0, error / step)
    worst = float(steps.max()) if np.isfinite(steps).all() else float("inf")
    report.compressed += 1
    report.worst_steps = max(report.worst_steps, worst)
    # One step of the channel's scale, plus fp16 rounding of the weight on the way in and out.
    if not np.all(error <= step + FP16_SLACK * np.abs(expected) + 1e-7):
        report.problems.append(
            f"weight {name} dequantizes {worst:.3g} quantization steps from the checkpoint's (limit 1)"
        )


def dequantize(op: Any) -> tuple[np.ndarray, np.ndarray]:
    """A compressed-weight op's float32 values and each value's quantization step (|scale|)."""
    inputs = op.inputs
    if op.op_type == "constexpr_affine_dequantize":
        # (data - zero_point) * scale, scale and zero_point scalar or one per index along `axis`.
        data = inputs["quantized_data"].val.astype(np.float32)
        shape = [1] * data.ndim
        shape[int(inputs["axis"].val)] = -1
        scale, offset = (np.asarray(inputs[k].val, np.float32) for k in ("scale", "zero_point"))
        scale, offset = (a.reshape(shape) if a.ndim == 1 else a for a in (scale, offset))
    else:
        # constexpr_blockwise_shift_scale: (data - offset) * scale, scale/offset one per block
        # (same rank as data, each dimension dividing the data's).
        data = inputs["data"].val.astype(np.float32)
        scale = _blocks(np.asarray(inputs["scale"].val, np.float32), data.shape)
        offset = inputs.get("offset")  # optional: absent for symmetric quantization
        offset = 0.0 if offset is None else _blocks(np.asarray(offset.val, np.float32), data.shape)
    return (data - offset) * scale, np.broadcast_to(np.abs(scale), data.shape)


def _blocks(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    for axis, (size, blocks) in enumerate(zip(shape, values.shape)):
        values = np.repeat(values, size // blocks, axis=axis)
    return values
