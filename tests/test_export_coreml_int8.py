"""Core ML `--precision int8`: per-channel int8 weights, checked against the checkpoint off macOS."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet.checkpoint import load_checkpoint, save_checkpoint
from export import export_artifact
from export.to_coreml import INT8_SCHEME
from export.validate import (
    check_coreml_package,
    check_weights,
    compare,
    expected_weights,
    load_program,
    validate_artifact,
)
from runtime.metadata import METADATA_KEY, ArtifactMetadata

ct = pytest.importorskip("coremltools")

WEIGHTS = 8  # AlexNet's 5 conv + 3 linear weights: each stored as int8


@pytest.fixture(scope="module")
def ckpt(cifar_checkpoint):
    return cifar_checkpoint  # the session's (conftest.py): read-only here


@pytest.fixture(scope="module")
def int8_image(ckpt, tmp_path_factory):
    return export_artifact(ckpt, "coreml", tmp_path_factory.mktemp("int8") / "int8.mlpackage", precision="int8")


def _metadata(path: Path) -> ArtifactMetadata:
    return ArtifactMetadata.from_json(ct.utils.load_spec(str(path)).description.metadata.userDefined[METADATA_KEY])


def _weight_file(path: Path) -> int:
    return (path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").stat().st_size


def test_int8_metadata_records_scheme_and_gate(ckpt, int8_image):
    meta = _metadata(int8_image)
    assert meta.precision == "int8" and meta.format == "coreml"
    assert meta.quantization["scheme"] == INT8_SCHEME
    gate = meta.quantization["gate"]
    assert gate["passed"] and gate["kind"] == "weights" and gate["weights"] == WEIGHTS
    assert 0 < gate["max_error_steps"] <= 1
    assert ct.utils.load_spec(str(int8_image)).specificationVersion == 7  # iOS 16: no newer target needed
    result = check_coreml_package(int8_image, load_checkpoint(ckpt))
    assert result.passed and "quantization steps of the checkpoint's (limit 1)" in result.note


def test_int8_weights_are_int8_within_one_step_and_a_changed_one_is_named(ckpt, int8_image):
    program = load_program(ct.models.MLModel(str(int8_image), skip_model_load=True))
    ops = program.functions["main"].operations
    packed = [op for op in ops if op.op_type == "constexpr_affine_dequantize"]
    assert len(packed) == WEIGHTS
    assert all(op.inputs["quantized_data"].val.dtype == np.int8 for op in packed)
    assert all(np.all(op.inputs["zero_point"].val == 0) for op in packed)  # symmetric
    assert all(np.asarray(op.outputs[0].val).dtype == np.float16 for op in ops if op.name.endswith("_bias_to_fp16"))
    checkpoint = load_checkpoint(ckpt)
    expected = expected_weights(checkpoint.build_model(), checkpoint.preprocess.std)
    report = check_weights(program, expected, "int8")
    assert report.problems == [] and report.compressed == WEIGHTS
    assert 0.4 < report.worst_steps <= 1  # rounding to the nearest step: about half a step
    expected["classifier.4.weight"][7, 11] += 1.0  # hundreds of steps of ~0.01/127
    [problem] = check_weights(program, expected, "int8").problems
    assert problem.startswith("weight classifier.4.weight dequantizes") and "quantization steps" in problem


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS the package is validated numerically")
def test_validation_off_macos_fails_a_changed_checkpoint(ckpt, int8_image, tmp_path):
    checkpoint = load_checkpoint(ckpt)
    checkpoint.model_state["features.0.weight"] *= 1.5
    result = validate_artifact(int8_image, save_checkpoint(checkpoint, tmp_path / "changed.pth"))
    assert not result.passed and "needs macOS" not in result.note and "weight features.0.weight" in result.note


def _program(weight_op, opset):
    """A one-linear MIL program whose weight `fc.weight` is the compressed op `weight_op` builds."""
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    # fp16 input: the dequantized weight is fp16 (the scale's type), and linear wants both alike.
    @mb.program(input_specs=[mb.TensorSpec((1, 4), dtype=types.fp16)], opset_version=opset)
    def program(x):
        return mb.linear(x=x, weight=weight_op(mb))

    return program


QUANTIZED = np.array([[127, -64, 3, 0], [-127, 50, 0, 1]], np.int8)  # (out 2, in 4)
SCALE = np.array([0.01, 0.002], np.float16)  # one step per output channel
WEIGHT = QUANTIZED * SCALE.astype(np.float32)[:, None]


@pytest.mark.parametrize("op_type", ["constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"])
def test_check_weights_dequantizes_both_op_kinds(op_type):
    def build(scale):
        if op_type == "constexpr_affine_dequantize":  # iOS 16/17: scale per index along `axis`
            zero = np.zeros(2, np.int8)
            return lambda mb: mb.constexpr_affine_dequantize(
                quantized_data=QUANTIZED, zero_point=zero, scale=scale, axis=0, name="fc_weight_quantized"
            )
        return lambda mb: mb.constexpr_blockwise_shift_scale(  # iOS 18: scale per block, data's rank
            data=QUANTIZED, scale=scale[:, None], name="fc_weight_quantized"
        )

    opset = ct.target.iOS16 if op_type == "constexpr_affine_dequantize" else ct.target.iOS18
    within = WEIGHT + 0.4 * SCALE.astype(np.float32)[:, None]  # 0.4 steps off everywhere
    report = check_weights(_program(build(SCALE), opset), {"fc.weight": within}, "int8")
    assert report.problems == [] and report.compressed == 1 and report.worst_steps == pytest.approx(0.4, rel=1e-3)
    corrupted = SCALE * np.array([1, 3], np.float16)  # channel 1's scale tripled: 127 * 2 * 0.002 off
    report = check_weights(_program(build(corrupted), opset), {"fc.weight": WEIGHT}, "int8")
    # ... which is 84.7 of its (corrupted) 0.006 steps
    assert report.problems == ["weight fc.weight dequantizes 84.7 quantization steps from the checkpoint's (limit 1)"]


def test_compare_int8_gates_top1_and_finiteness_not_max_diff():
    ref = np.array([[4.0, 0.0, -1.0]] * 100, np.float32)
    moved = ref + np.array([-1.5, 1.0, 2.0], np.float32)  # large diffs, same top-1
    result = compare("coreml", moved, ref, "int8")
    assert result.passed and result.max_abs == 2.0 and "not gated" in result.summary()
    flipped = moved.copy()
    flipped[:2] = [0.0, 9.0, 0.0]  # 98% agreement
    assert not compare("coreml", flipped, ref, "int8").passed
    broken = moved.copy()
    broken[0, 2] = np.nan
    assert not compare("coreml", broken, ref, "int8").passed
    assert not compare("coreml", moved, ref, "int8", atol=1.0).passed  # an explicit atol still gates


def test_int8_package_is_at_most_60_percent_of_fp16(int8_image, cifar_coreml_fp16):
    assert _weight_file(int8_image) <= 0.6 * _weight_file(cifar_coreml_fp16)


@pytest.mark.macos
def test_int8_predicts_like_pytorch(ckpt, int8_image):
    result = validate_artifact(int8_image, ckpt)
    assert result.passed and result.top1 >= 0.99
