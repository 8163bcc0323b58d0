"""benchmarks.e2e: end-to-end rows (image files -> decode -> preprocess -> predict through runtime.load),
and the shipped-format runners timing the runtime's own backend. Tiny budgets; no timing is asserted."""

from __future__ import annotations

import numpy as np
import pytest
from builders import saved_checkpoint
from PIL import Image

from benchmarks import e2e, roofline, runners, suite
from benchmarks.artifacts import Artifacts, open_source
from benchmarks.onnx_runners import OnnxRuntimeRunner
from benchmarks.openvino_runner import OpenVinoRunner
from benchmarks.runners import TorchScriptRunner
from benchmarks.timing import Budget
from benchmarks.variant import E2E, E2E_BACKENDS, FP32, PHOTO_SETS, Variant, variants
from runtime import formats
from runtime.backends.torchscript_backend import TorchScriptBackend
from runtime.predictor import Predictor
from runtime.preprocess import preprocess_batch

QUICK = {"sizes": (128,), "mbytes": 8, "repeats": 1}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    # the tests' 1/16-width torchvision layout at 64 px: every export in seconds
    workdir = tmp_path_factory.mktemp("bench-e2e")
    e2e.write_images(workdir)
    ckpt = saved_checkpoint(workdir / "small.pth", variant="torchvision", size=64, num_classes=10)
    return Artifacts(open_source(ckpt, workdir), workdir)


# the 12-MP set writes 4032x3024 JPEGs twice (~12 s): test-all
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "12mp" else n for n in PHOTO_SETS])
def test_images_are_deterministic_jpegs_of_photo_size(tmp_path, name, monkeypatch):
    size, count = PHOTO_SETS[name]
    monkeypatch.setitem(PHOTO_SETS, name, (size, 2))  # two are enough to compare
    first = e2e.write_images(tmp_path / "a", name)
    second = e2e.write_images(tmp_path / "b", name)
    assert len(first) == 2 and first != e2e.image_paths(tmp_path / "a", "e2e" if name != "e2e" else "12mp")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with Image.open(first[0]) as image:
        assert image.format == "JPEG" and image.size == size


def test_e2e_variants_cover_both_photo_sets_at_each_precision_the_backend_runs():
    labels = [v.label for v in variants("onnxruntime", "cpu") if e2e.is_e2e(v)]
    assert labels == ["fp32 e2e", "int8 e2e", "fp32 e2e 12mp", "int8 e2e 12mp"]
    assert [v.label for v in variants("pytorch", "cpu") if e2e.is_e2e(v)] == ["fp32 e2e", "fp32 e2e 12mp"]
    assert e2e.photo_set(Variant("int8", ("e2e", "12mp"))) == "12mp" and e2e.photo_set(E2E) == "e2e"


def test_e2e_variants_are_the_deployable_backends_on_the_cpu():
    for backend in ("pytorch", "torchscript", "onnxruntime", "openvino", "coreml"):
        assert E2E in variants(backend, "cpu") and E2E not in variants(backend, "cuda")
    assert E2E not in variants("torch.compile", "cpu")
    assert E2E.label == "fp32 e2e"
    assert (("onnxruntime", E2E)) not in suite.runner_pairs(["onnxruntime"], "cpu", ["int8"])  # --precisions
    assert (("onnxruntime", E2E)) in suite.runner_pairs(["onnxruntime"], "cpu", ["fp32"])
    assert {b for b, v in suite.runner_pairs(["openvino"], "cpu") if e2e.is_e2e(v)} == {"openvino"}  # --backends
    assert suite.runner_class("onnxruntime", E2E) is e2e.OnnxRuntimeEndToEnd
    assert suite.runner_class("onnxruntime", FP32) is OnnxRuntimeRunner
    assert suite.runner_class("openvino", E2E) is e2e.OpenVinoEndToEnd
    assert suite.runner_class("openvino", FP32) is OpenVinoRunner


def test_every_e2e_backend_has_its_runner_of_its_format():
    assert set(e2e.E2E_RUNNERS) == set(E2E_BACKENDS) and set(E2E_BACKENDS) <= set(runners.RUNNERS)
    for backend in E2E_BACKENDS:
        runner = e2e.E2E_RUNNERS[backend]
        assert runner.runtime_backend == backend
        table = formats.for_backend(backend)  # None: pytorch, which runs the checkpoint itself
        assert runner.export_format == (table.name if table else None)
    assert {f.backend for f in formats.FORMATS.values() if f.benchmarked} <= set(runners.RUNNERS)


@pytest.mark.parametrize(
    "e2e_runner, plain_runner",
    [(e2e.OnnxRuntimeEndToEnd, OnnxRuntimeRunner), (e2e.OpenVinoEndToEnd, OpenVinoRunner)],
    ids=["onnxruntime", "openvino"],
)
def test_e2e_runner_predicts_the_files_as_the_plain_runner_does(artifacts, e2e_runner, plain_runner):
    runner = e2e_runner(artifacts, "cpu", E2E, threads=1)
    plain = plain_runner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        plain.build()
        assert isinstance(runner.predictor, Predictor) and runner.predictor.backend_name == runner.backend
        assert runner.artifact == plain.artifact  # the same exported file
        runner.prepare(np.zeros((2, 3, 64, 64), np.float32))  # only its batch size is taken
        runner.step()
        runner.reset_counters()  # as the worker does after the warm-up
        for _ in range(3):
            runner.step()
        logits = runner.logits()
        assert logits.shape == (2, 10) and runner.last_files != runner.files[:2]  # the files rotate
        plain.prepare(preprocess_batch(runner.last_files, runner.predictor.metadata.preprocess))
        plain.step()
        np.testing.assert_allclose(logits, plain.logits(), rtol=1e-4, atol=1e-5)
        share = e2e.preprocess_share(runner.counters())
        assert share is not None and 0.0 <= share <= 1.0
    finally:
        runner.close()
        plain.close()


def test_torchscript_runner_times_the_runtime_backend(artifacts):
    runner = TorchScriptRunner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        assert isinstance(runner.predictor, Predictor)
        assert isinstance(runner.predictor.backend, TorchScriptBackend)
        assert runner.module is runner.predictor.backend.module  # the module step() calls
    finally:
        runner.close()


def test_a_tiny_run_has_e2e_rows_with_a_preprocessing_share(artifacts):
    settings = suite.Settings(
        ["onnxruntime"], ["cpu"], [1, 2], Budget(iterations=2, rounds=2), warmup=1, threads=1, measure=QUICK
    )
    settings.precisions, settings.remeasure = ("fp32",), False
    settings.pairs = [("pytorch", FP32), ("onnxruntime", FP32), ("onnxruntime", E2E)]  # the 500x375 photos only
    cost = roofline.model_cost(artifacts.source.build_model(), artifacts.source.image_size)
    result = suite.run_suite(artifacts, cost, settings)
    rows = {(r.backend, r.variant, r.batch_size): r for r in result.rows}
    for n in (1, 2):
        row = rows[("onnxruntime", "fp32 e2e", n)]
        assert row.status == "ok", row.reason
        assert row.throughput_ips > 0 and row.latency_ms["n"] == 2
        assert 0.0 <= row.preprocess_share <= 1.0
        assert row.model_ips > 0 and row.info["workers"] >= 1
        assert row.max_rel_diff is None  # its input is the files, not the random batch
        assert rows[("onnxruntime", "fp32", n)].preprocess_share is None
    table = e2e.e2e_table({"rows": [r.to_dict() for r in result.rows]}, "cpu")
    assert "model alone, images/s" in table[0]
    assert any(line.startswith("| 32 JPEG 500x375 | onnxruntime | fp32 | 2 |") for line in table)
