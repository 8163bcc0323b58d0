"""The Core ML reference evaluator (runtime.mlprogram) and its backend, `coreml-reference`: exported
packages run off macOS agree with PyTorch; a changed weight, an unknown op, a foreign package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import CLASSES, reference, saved_checkpoint

import runtime
from export import QuantizeOptions, export_artifact
from export.validate import FP16_RTOL, validate_artifact, validation_inputs
from runtime.backends import ModelLoadError

ct = pytest.importorskip("coremltools")

# The smallest size each variant takes; the tests' 1/16-width models (builders.SMALL).
SIZES = {"cifar": 32, "paper": 67, "torchvision": 64}
# Every variant x input kind x precision: 18 exports of a 1 MB model, a second or two each.
# (The full-size matrix at the variants' own sizes: benchmarks/coreml_reference.py.)
COMBINATIONS = {
    variant: [(kind, p) for kind in ("image", "tensor") for p in ("fp32", "fp16", "int8")] for variant in SIZES
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """variant -> (checkpoint, {(input kind, precision): package}), every combination exported."""
    root = tmp_path_factory.mktemp("coreml-reference")
    made = {}
    for variant, size in SIZES.items():
        ckpt = saved_checkpoint(root / f"{variant}.pth", variant=variant, size=size)
        made[variant] = (ckpt, {})
        for kind, precision in COMBINATIONS[variant]:
            out = root / f"{variant}-{kind}-{precision}.mlpackage"
            made[variant][1][kind, precision] = export_artifact(
                ckpt, "coreml", out, precision=precision, coreml_input=kind
            )
    return made


@pytest.mark.parametrize("variant", list(SIZES))
def test_every_variant_input_and_precision_agrees_with_pytorch(packages, variant):
    ckpt, made = packages[variant]
    for (kind, precision), path in made.items():
        with runtime.load(path) as predictor:  # auto: coreml-reference off macOS
            assert predictor.backend_name == ("coreml" if sys.platform == "darwin" else "coreml-reference")
            batch = validation_inputs(predictor.metadata, None, random=3, images=3)
            got = predictor.predict_logits(batch)
        ref = reference(ckpt, batch)
        error, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
        # Untrained logits are small (|logit| ~0.1), so each bound is also relative to their scale;
        # measured: fp32 <= 1.2e-6, fp16 <= 1.4e-3, int8 <= 4.2e-2 of the scale.
        limit = {"fp32": min(1e-4, 1e-5 * scale), "fp16": min(FP16_RTOL * max(1, scale), 5e-3 * scale)}
        limit["int8"] = 0.1 * scale
        assert error <= limit[precision], (kind, precision, error, scale)


@pytest.mark.slow  # trains make demo's model (minutes on 2 cores) unless another slow test did
def test_trained_model_top1_agrees_on_real_images(demo_run, tmp_path):
    """fp16 (image input) and int8 (tensor input, gated at export by the evaluator) on 96 held-out images.

    int8 here is weight-only (fp16 compute): on the demo model it agreed with fp32 on 95 of 96 gate
    images (98.96%), so the gate is given a 3% margin and the test a 95% floor; fp16 agrees on all."""
    ckpt, _ = demo_run
    fp16 = export_artifact(ckpt, "coreml", tmp_path / "fp16.mlpackage", precision="fp16")
    lines = []
    int8 = export_artifact(
        ckpt, "coreml", tmp_path / "int8.mlpackage", precision="int8", coreml_input="tensor",
        quantize=QuantizeOptions(gate_size=96, max_agreement_loss=0.03, max_accuracy_drop=0.05), echo=lines.append,
    )  # fmt: skip
    assert any("gate [coreml-reference]: PASS" in line for line in lines), lines
    for path in (fp16, int8):
        with runtime.load(path) as predictor:
            batch = validation_inputs(predictor.metadata, None, random=0, images=96, seed=1)
            got = predictor.predict_logits(batch)
            gate = (predictor.metadata.quantization or {}).get("gate")
        ref = reference(ckpt, batch)
        assert (got.argmax(1) == ref.argmax(1)).mean() >= (0.99 if path == fp16 else 0.95)
        assert np.abs(got - ref).max() <= FP16_RTOL * max(1.0, np.abs(ref).max()) * (1 if path == fp16 else 10)
    assert gate["kind"] == "weights+predictions" and gate["passed"] and gate["agreement"] >= 0.97
    assert gate["evaluator"] == "coreml-reference" and gate["images"] == 96


def _scale_weight(package: Path, const_name: str, factor: float) -> None:
    """Multiply one weight inside the package's weight file in place (as a wrong folded normalization would)."""
    spec = ct.utils.load_spec(str(package))
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    op = next(op for op in block.operations if op.type == "const" and op.outputs[0].name == const_name)
    blob = op.attributes["val"].blobFileValue
    weights = package / "Data" / "com.apple.CoreML" / "weights" / Path(blob.fileName).name
    raw = bytearray(weights.read_bytes())
    sentinel, _, size, offset = (
        np.frombuffer(raw, "<u4", 2, blob.offset).tolist() + np.frombuffer(raw, "<u8", 2, blob.offset + 8).tolist()
    )
    assert sentinel == 0xDEADBEEF
    values = np.frombuffer(raw, np.float16, size // 2, offset) * np.float16(factor)
    raw[offset : offset + size] = values.astype(np.float16).tobytes()
    weights.write_bytes(bytes(raw))


def test_a_changed_weight_fails_validation_by_its_numbers(cifar_checkpoint, tmp_path):
    # Logits of a trained model's scale: the untrained small model's (~1e-3) sit below the fp16
    # tolerance's floor (1e-2 absolute), where no change of a weight could fail by the numbers.
    from alexnet.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(cifar_checkpoint)
    checkpoint.model_state["classifier.6.weight"] *= 1000
    scaled = save_checkpoint(checkpoint, tmp_path / "scaled.pth")
    package = export_artifact(scaled, "coreml", tmp_path / "changed.mlpackage", precision="fp16")
    _scale_weight(package, "features_0_weight_to_fp16", 1.5)  # conv1, as if 1/std were folded in wrongly
    result = validate_artifact(package, scaled)
    assert not result.passed
    assert result.max_abs > result.atol  # the predictions fail, not only the weight check
    assert "differs from the checkpoint" in result.note


def _builder_package(tmp_path: Path, body, name: str) -> tuple[Path, np.ndarray]:
    """A foreign ML Program (no alexnet-deploy metadata): x (1, 3, 8, 8) -> body(x, weight) -> (1, 4)."""
    from coremltools.converters.mil.mil import Builder as mb

    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 8, 8))], opset_version=ct.target.iOS16)
    def program(x):
        return body(mb, x, weight)

    model = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    path = tmp_path / f"{name}.mlpackage"
    model.save(str(path))
    return path, weight


def test_a_foreign_package_of_known_ops_runs(tmp_path):
    def body(mb, x, weight):
        y = mb.conv(x=x, weight=weight, pad_type="same", strides=[2, 2])
        return mb.reduce_mean(x=mb.relu(x=y), axes=[2, 3], keep_dims=False)

    path, weight = _builder_package(tmp_path, body, "foreign")
    batch = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with runtime.load(path, backend="coreml-reference", labels=["a", "b", "c", "d"]) as predictor:
        got = predictor.predict_logits(batch)
    # "same" at stride 2: out = ceil(8 / 2) = 4, total padding (4 - 1) * 2 + 3 - 8 = 1, at the end
    padded = torch.nn.functional.pad(torch.from_numpy(batch), (0, 1, 0, 1))
    conv = torch.nn.functional.conv2d(padded, torch.from_numpy(weight), stride=2)
    np.testing.assert_allclose(got, conv.relu().mean((2, 3)).numpy(), atol=1e-5)


def test_an_unknown_op_is_one_line_naming_it_and_the_model(tmp_path):
    def body(mb, x, weight):
        return mb.reduce_mean(x=mb.erf(x=mb.conv(x=x, weight=weight)), axes=[2, 3], keep_dims=False)

    path, _ = _builder_package(tmp_path, body, "erf")
    with pytest.raises(ModelLoadError) as error:
        runtime.load(path, backend="coreml-reference", labels=["a", "b", "c", "d"])
    message = str(error.value)
    assert "'erf'" in message and str(path) in message and "\n" not in message


def test_alexnet_run_says_which_evaluator_runs(cifar_coreml_fp16, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from runtime.cli import main

    Image.new("RGB", (40, 40), (200, 30, 60)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["-m", str(cifar_coreml_fp16), "--json", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["labels"][0] in CLASSES
    if sys.platform != "darwin":
        assert "reference evaluator" in result.stderr


def test_the_evaluator_needs_no_torch(cifar_coreml_fp16):
    script = (
        "import sys; sys.modules['torch'] = None\n"  # import torch raises ImportError from here on
        "import numpy as np, runtime\n"
        f"p = runtime.load({str(cifar_coreml_fp16)!r}, backend='coreml-reference')\n"
        "print(p.predict_logits(np.zeros((2, 3, 32, 32), np.float32)).shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("(2, 5)")


@pytest.mark.macos
@pytest.mark.parametrize("kind", ["image", "tensor"])
def test_the_evaluator_matches_core_ml_itself(packages, kind):
    ckpt, made = packages["cifar"]
    with runtime.load(made[kind, "fp16"], backend="coreml") as core_ml:
        batch = validation_inputs(core_ml.metadata, None, random=4, images=4)
        theirs = core_ml.predict_logits(batch)
    with runtime.load(made[kind, "fp16"], backend="coreml-reference") as evaluator:
        ours = evaluator.predict_logits(batch)
    assert np.abs(ours - theirs).max() <= FP16_RTOL * max(1.0, np.abs(theirs).max())
    assert (ours.argmax(1) == theirs.argmax(1)).all()
