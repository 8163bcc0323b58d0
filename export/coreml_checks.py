"""Structural checks of a Core ML package, where Core ML cannot predict (Linux, Windows).

The spec must load; the input, outputs, classifier labels and alexnet-deploy metadata must
match the checkpoint; every weight must equal the checkpoint's within fp16 rounding, and an
int8 package's compressed weights must dequantize to within one quantization step (their
channel's scale) of the checkpoint's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.checkpoint import Checkpoint
from export.common import first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.mlprogram import classifier_labels, load_program
from runtime.mlprogram.layers import constexpr_affine_dequantize, constexpr_blockwise_shift_scale, repeat_blocks

FP16_SLACK = 2**-10  # relative: a weight rounded to fp16 on the way into the package, and again out
# Core ML's compressed-weight ops: iOS 16/17 packages hold the first, iOS 18 ones the second.
DEQUANTIZE_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def coreml_problems(path: Path, checkpoint: Checkpoint) -> list[str]:
    return inspect_package(path, checkpoint)[0]


def inspect_package(path: Path, checkpoint: Checkpoint) -> tuple[list[str], WeightReport | None]:
    """The problems found in the package at `path` and, when its weights were reached, their report."""
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
    labels = classifier_labels(program)
    if labels != list(checkpoint.class_names):
        problems.append(f"classifier labels {labels[:3]}... differ from the checkpoint's class names")
    image_input = description.input[0].type.WhichOneof("Type") == "imageType"
    std = checkpoint.preprocess.std if image_input else None
    report = check_weights(program, expected_weights(checkpoint.build_model(), std), metadata.precision)
    return problems + report.problems, report


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
    """A compressed-weight op's float32 values (as the reference evaluator computes them) and each
    value's quantization step (|scale|, broadcast to the weight's shape)."""
    inputs = {name: var.val for name, var in op.inputs.items()}
    if op.op_type == "constexpr_affine_dequantize":
        values = constexpr_affine_dequantize(**inputs)
        scale = np.asarray(inputs["scale"], np.float32)
        if scale.ndim == 1:
            shape = [1] * values.ndim
            shape[int(inputs["axis"])] = -1
            scale = scale.reshape(shape)
    else:
        values = constexpr_blockwise_shift_scale(**inputs)
        scale = repeat_blocks(np.asarray(inputs["scale"], np.float32), values.shape)
    return values, np.broadcast_to(np.abs(scale), values.shape)
