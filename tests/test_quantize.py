"""int8 ONNX export: calibration reading, the accuracy gate, the layer fallback, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from export import calibration
from export.cli import main
from runtime.preprocess import PreprocessSpec, preprocess_image

SPEC = PreprocessSpec(resize=36, crop=32)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_images(folder, count, size=40, broken=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size + 7, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def untrained(cifar_checkpoint):
    return cifar_checkpoint  # the session's (conftest.py): no training record, so no default calibration data


@pytest.fixture(scope="module")
def _prepared(tmp_path_factory):
    """(folder, {key: file}): the fp32 models of `one_fp32_model`, kept for the module."""
    return tmp_path_factory.mktemp("int8-fp32"), {}


@pytest.fixture
def one_fp32_model(monkeypatch, _prepared):
    """The int8 exporter's first step, its fp32 ONNX export plus onnxruntime's pre-processing (the
    larger part of an export of this model), made once per (checkpoint, input size, opset) for the
    module's gate tests; later exports start from a copy of it. Every export still calibrates,
    quantizes, gates and writes on its own, and the demo model's test runs the exporter unchanged."""
    from export import to_onnx_int8

    folder, made = _prepared
    real_prepare = to_onnx_int8._Workspace.prepare

    def prepare(self, model, metadata, opset):
        key = (metadata.source_sha256, metadata.input_shape[1:], opset)
        if key in made:
            shutil.copyfile(made[key], self.fp32)
            self.layers = to_onnx_int8.layer_names(self.fp32)  # what the real step ends with
            return
        real_prepare(self, model, metadata, opset)
        made[key] = folder / f"fp32-{len(made)}.onnx"
        shutil.copyfile(self.fp32, made[key])

    monkeypatch.setattr(to_onnx_int8._Workspace, "prepare", prepare)


def test_reader_streams_with_the_artifacts_preprocessing_and_counts_broken(tmp_path):
    folder = write_images(tmp_path / "flat", 5, broken=2)
    images = calibration.resolve_gate_set(str(folder), ["a"], SPEC)
    loads = []
    counted = calibration.ImageSet(images.description, images.labels, lambda i: loads.append(i) or images.load(i))
    for workers in (0, 3):
        loads.clear()
        log = calibration.ReadLog()
        stream = calibration.batches(counted, SPEC, limit=100, batch_size=2, log=log, workers=workers)
        first, labels = next(stream)
        assert first.shape == (2, 3, 32, 32) and labels == [None, None]
        # two broken files sort first, then two images; threads read at most a batch and a file each ahead
        assert len(loads) == 4 if workers == 0 else 4 <= len(loads) <= 4 + 2 + workers
        np.testing.assert_array_equal(first[0], preprocess_image(images.load(2), SPEC))
        rest = list(stream)
        assert [b.shape[0] for b, _ in rest] == [2, 1]
        assert (log.read, log.skipped) == (5, 2) and "not an image" in log.first_error


def test_held_out_images_are_never_calibration_images(tmp_path):
    folder = write_images(tmp_path / "flat", 30)
    calib, gate = calibration.resolve_sets(str(folder), ["a"], SPEC)
    calib_paths = {calib.load(i) for i in range(calib.count)}
    gate_paths = {gate.load(i) for i in range(gate.count)}
    assert calib_paths.isdisjoint(gate_paths) and len(calib_paths | gate_paths) == 30 and gate.count >= 1
    calib, gate = calibration.resolve_sets("synthetic", ["circle", "square"], SPEC)
    assert "train" in calib.description and "val" in gate.description
    assert gate.labels[:3] == [0, 1, None]  # labels by class name; triangle is not a class of this model


def test_imagefolder_gate_labels_map_by_name(tmp_path):
    for name in ("square", "circle", "unknown"):
        write_images(tmp_path / "data" / name, 2)
    gate = calibration.resolve_gate_set(str(tmp_path / "data"), ["circle", "square"], SPEC)
    assert gate.labels == [0, 0, 1, 1, None, None] and gate.labelled


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no calibration images"),
        (lambda p: write_images(p / "bad", 0, broken=3), "calibration images in"),
    ],
)
def test_bad_calibration_data_fails_before_any_heavy_work(untrained, tmp_path, monkeypatch, make, message):
    from export import to_onnx_int8

    def no_heavy_work(*args, **kwargs):
        raise AssertionError("the fp32 export started")

    monkeypatch.setattr(to_onnx_int8._Workspace, "prepare", no_heavy_work)
    out = tmp_path / "m.onnx"
    result = run("--format", "onnx", "--precision", "int8", untrained, "-o", out, "--calibration", make(tmp_path))
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_torchscript_int8_and_missing_calibration_are_one_line_errors(untrained, tmp_path):
    result = run("--format", "torchscript", "--precision", "int8", untrained, "-o", tmp_path / "m.pt")
    assert result.exit_code == 1 and "use --format onnx --precision int8" in result.output
    result = run("--format", "onnx", "--precision", "int8", untrained, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "pass --calibration" in result.output  # no training data in this checkpoint
    result = run("--format", "onnx", "--precision", "int8", "--batch", "4", untrained, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "drop --batch" in result.output
    result = run("--format", "all", "--precisions", "fp32,int4", untrained, "-o", tmp_path)
    assert result.exit_code == 2 and "--precisions" in result.output


def test_fewer_images_than_asked_is_a_warning(tmp_path):
    from export.to_onnx_int8 import probe_calibration

    said = []
    images = calibration.resolve_gate_set(str(write_images(tmp_path / "few", 3)), ["a"], SPEC)
    probe_calibration(images, SPEC, 300, said.append)
    assert len(said) == 2 and "fewer than the 300 asked for" in said[0]
    assert said[1] == f"calibrating on 3 images from {images.description}, then gating ..."  # before the silent work


def test_metadata_round_trip_of_the_quantization_record():
    from runtime.metadata import ArtifactMetadata

    record = {"scheme": {"format": "QDQ"}, "gate": {"passed": True, "agreement": 0.995}, "fp32_layers": ["features.0"]}
    metadata = ArtifactMetadata(
        class_names=("a",), preprocess=SPEC, model_config={}, input_shape=(None, 3, 32, 32), precision="int8"
    )
    metadata = ArtifactMetadata.from_json(json.dumps(metadata.to_dict() | {"quantization": record}))
    assert metadata.precision == "int8" and metadata.quantization == record
    assert ArtifactMetadata.from_json(metadata.to_json()) == metadata


def _quantized_layers(path):
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name.removesuffix(".weight_quantized") for i in model.graph.initializer if i.name.endswith("_quantized")}


@pytest.mark.slow
def test_the_trained_demo_model_passes_the_gate_and_agrees_on_held_out_images(demo_run, tmp_path):
    """The issue's target on the demo model: agreement >= 99%, accuracy drop <= 1 point (the fallback
    may keep layers in fp32 to get there); checked again here, outside the exporter."""
    import runtime
    from export.gate import run_onnx
    from export.quantize import fp32_logits

    checkpoint, _ = demo_run
    out = tmp_path / "demo-int8.onnx"
    result = run("--format", "onnx", "--precision", "int8", checkpoint, "-o", out, "--calibration-size", "64")
    assert result.exit_code == 0, result.output
    assert "calibrated on 64 images from synthetic train split" in result.output
    with runtime.load(out) as predictor:
        metadata = predictor.metadata
    record = metadata.quantization
    assert metadata.precision == "int8" and record["gate"]["passed"] and record["gate"]["images"] == 400
    assert set(record["fp32_layers"]).isdisjoint(_quantized_layers(out)) and _quantized_layers(out)
    from export.source import Source

    checkpoint_obj = Source.open(checkpoint).checkpoint
    model = checkpoint_obj.build_model()
    held_out = calibration.resolve_sets("synthetic", checkpoint_obj.class_names, metadata.preprocess)[1]
    inputs = np.stack([preprocess_image(held_out.load(i), metadata.preprocess) for i in range(held_out.count)])
    ours, theirs = run_onnx(out, inputs).argmax(1), fp32_logits(model, inputs).argmax(1)
    labels = np.asarray(held_out.labels)
    assert (ours == theirs).mean() >= 0.99
    assert (theirs == labels).mean() - (ours == labels).mean() <= 0.01
    assert out.stat().st_size <= 0.4 * checkpoint.stat().st_size
    from alexnet.cli.eval import main as eval_main

    evaluated = CliRunner().invoke(eval_main, [str(out), "--data", "synthetic", "--json", "-"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["top1"] == pytest.approx((ours == labels).mean())


def test_fallback_keeps_the_sensitive_layer_in_fp32_and_records_it(untrained, tmp_path, monkeypatch, one_fp32_model):
    """features.0 is made sensitive on purpose: while it is quantized, a fifth of the outputs flip.
    The fallback must find it, keep it (alone) in fp32, pass, and say so in the metadata."""
    import runtime
    from export import to_onnx_int8
    from export.gate import run_onnx

    def run_with_sensitive_conv1(path, inputs):
        logits = run_onnx(path, inputs)
        if "features.0" in _quantized_layers(path):
            logits[::5] = -logits[::5]  # the top class becomes the last
        return logits

    monkeypatch.setattr(to_onnx_int8, "run_onnx", run_with_sensitive_conv1)
    # Three candidate layers instead of eight: the same search, at half the test's time.
    real_layer_names = to_onnx_int8.layer_names
    candidates = ("classifier.6", "features.0", "features.3")

    def three_layers(path):
        return {node: layer for node, layer in real_layer_names(path).items() if layer in candidates}

    monkeypatch.setattr(to_onnx_int8, "layer_names", three_layers)
    out = tmp_path / "m.onnx"
    args = ["--calibration", "synthetic", "--calibration-size", "16", "--gate-size", "100", "--target-cpu", "vnni"]
    result = run("--format", "onnx", "--precision", "int8", untrained, "-o", out, *args, "--max-agreement-loss", "0.05")
    assert result.exit_code == 0, result.output
    assert "gate [all layers int8]: FAIL" in result.output and "gate [features.0 in fp32]: PASS" in result.output
    with runtime.load(out) as predictor:
        record = predictor.metadata.quantization
    assert record["fp32_layers"] == ["features.0"] and record["gate"]["step"] == "features.0 in fp32"
    assert record["target_cpu"] == "vnni" and record["scheme"]["activation_type"] == "uint8"
    assert "features.0" not in _quantized_layers(out) and "classifier.6" in _quantized_layers(out)


def test_a_gate_that_cannot_pass_exits_1_and_writes_nothing(untrained, tmp_path, monkeypatch, one_fp32_model):
    from export import to_onnx_int8
    from export.gate import run_onnx

    monkeypatch.setattr(to_onnx_int8, "run_onnx", lambda path, inputs: -run_onnx(path, inputs))
    out = tmp_path / "m.onnx"
    args = ["--calibration", "synthetic", "--calibration-size", "8", "--gate-size", "20", "--max-fp32-layers", "0"]
    result = run("--format", "onnx", "--precision", "int8", untrained, "-o", out, *args, "--target-cpu", "arm64")
    assert result.exit_code == 1 and "fails the accuracy gate at every step" in result.output
    assert "agreement 0.00%" in result.output.splitlines()[-1] and "nothing written" in result.output
    assert not out.exists() and not list(tmp_path.glob(".*"))
    result = run("--format", "onnx", "--precision", "int8", untrained, "-o", out, *args, "--force")
    assert result.exit_code == 0 and "written anyway because of --force" in result.output
    import runtime

    with runtime.load(out) as predictor:
        gate = predictor.metadata.quantization["gate"]
    assert gate["passed"] is False and gate["forced"] is True and predictor.metadata.precision == "int8"


def test_scratch_folders_of_killed_exports_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from export.to_onnx_int8 import SCRATCH_PREFIX, scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{SCRATCH_PREFIX}{dead.stdout.strip()}-abc"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-abc"
    stale.mkdir(), live.mkdir()
    with scratch_dir() as scratch:
        assert Path(scratch).name.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")
    assert not stale.exists() and live.exists()


def test_jobs_of_format_all_and_precisions():
    from export.cli_jobs import plan_jobs as _jobs

    formats = ("torchscript", "onnx", "coreml")
    assert _jobs(formats, None, "fp32,int8") == [
        ("torchscript", "fp32", None),
        ("onnx", "fp32", None),
        ("onnx", "int8", "int8"),
        ("coreml", "fp32", "fp32"),
        ("coreml", "int8", "int8"),
    ]
    assert _jobs(("onnx",), "int8", None) == [("onnx", "int8", "int8")]
    assert _jobs(("coreml",), None, None) == [("coreml", "fp16", None)]
