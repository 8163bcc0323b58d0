"""alexnet-bench's edge rows: the ExecuTorch program and the LiteRT model, fp32 and int8, timed as the runtime
backend runs them (benchmarks.edge_runners), their e2e rows, and their skips. The tests' small torchvision
layout at 64 px: every export in seconds; tiny budgets, no timing asserted."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from builders import random_batch, reference, saved_checkpoint

from benchmarks import e2e, edge_runners, quantized, roofline, suite
from benchmarks.artifacts import Artifacts, Skip, open_source, reopen_artifacts
from benchmarks.edge_runners import ExecuTorchRunner, LiteRtRunner
from benchmarks.timing import Budget
from benchmarks.variant import E2E, FP32, INT8, variants
from runtime import formats
from runtime.preprocess import preprocess_batch

SIZE = 64
MAX_BATCH = formats.get("executorch").max_batch


def needs_executorch() -> None:
    pytest.importorskip("executorch", reason="the executorch rows need ExecuTorch (the [executorch] extra)")


def needs_litert() -> None:
    pytest.importorskip("ai_edge_litert", reason="the litert rows run on ai-edge-litert (the [litert-runtime] extra)")
    pytest.importorskip("litert_torch", reason="the litert rows' files are made by litert-torch (the [litert] extra)")


NEEDS = {"executorch": needs_executorch, "litert": needs_litert}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    # fresh (given=False): the benchmark opens export's int8 gate wide for it, as for any fresh model
    workdir = tmp_path_factory.mktemp("bench-edge")
    e2e.write_images(workdir)
    ckpt = saved_checkpoint(workdir / "small.pth", variant="torchvision", size=SIZE, num_classes=10)
    return dataclasses.replace(open_source(ckpt, workdir), given=False)


@pytest.fixture(scope="module")
def artifacts(source):
    return Artifacts(source, source.checkpoint_path.parent)


def agrees(logits, expected, rel=1e-4):
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() <= rel * np.abs(expected).max()


def test_edge_backends_run_fp32_int8_and_e2e_on_the_cpu_only():
    for backend in ("executorch", "litert"):
        assert [v.label for v in variants(backend, "cpu")] == [
            "fp32",
            "int8",
            "fp32 e2e",
            "int8 e2e",
            "fp32 e2e 12mp",
            "int8 e2e 12mp",
        ]
        assert variants(backend, "cuda") == [FP32]  # a skipped row: the engine runs on the CPU
        runner = suite.runner_class(backend, FP32)
        assert runner.exports(FP32, "cpu") == [(backend, "fp32")] and runner.exports(FP32, "cuda") == []
    assert suite.runner_class("executorch", E2E) is e2e.ExecuTorchEndToEnd
    assert suite.runner_class("litert", E2E) is e2e.LiteRtEndToEnd


@pytest.mark.parametrize("runner_class", [ExecuTorchRunner, LiteRtRunner, e2e.ExecuTorchEndToEnd, e2e.LiteRtEndToEnd])
def test_a_missing_engine_is_a_skip_with_the_install_hint(artifacts, monkeypatch, runner_class):
    module = {"executorch": "executorch", "litert": "ai_edge_litert"}[runner_class.backend]
    monkeypatch.setitem(sys.modules, module, None)  # import -> ImportError, in this process only
    with pytest.raises(Skip, match=rf"^{module} not installed \(pip install 'alexnet-deploy\[bench\]'\)"):
        runner_class(artifacts, "cpu", E2E if issubclass(runner_class, e2e.EndToEndRunner) else FP32).build()


@pytest.mark.parametrize("runner_class", [ExecuTorchRunner, LiteRtRunner])
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_other_devices_are_skips(artifacts, monkeypatch, runner_class, device):
    monkeypatch.setattr(edge_runners, "import_optional", lambda name: None)  # installed or not: the device decides
    with pytest.raises(Skip, match=f"runs on the CPU here \\(XNNPACK\\), not on {device.upper()}"):
        runner_class(artifacts, device, FP32).build()


def test_executorch_runner_times_the_programs_forward_method(artifacts, monkeypatch):
    needs_executorch()
    runner = ExecuTorchRunner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        path = artifacts.get("executorch", "fp32")
        assert path.suffix == ".pte" and runner.artifact == str(path)
        backend = runner.predictor.backend
        assert runner.forward is backend._forward  # the method object backend.run executes
        assert runner.info["max_batch"] == MAX_BATCH and runner.info["threads"].startswith("not set: ExecuTorch's")
        batch = random_batch(2, size=SIZE)
        runner.prepare(batch)
        runner.step()
        agrees(runner.logits(), reference(artifacts.source.checkpoint_path, batch))
        assert runner.batch_info() == {}
        # Above the program's limit: the Predictor's parts, as alexnet-run runs them.
        calls = []
        real_run = backend.run
        monkeypatch.setattr(backend, "run", lambda x: calls.append(len(x)) or real_run(x))
        batch = random_batch(MAX_BATCH + 2, size=SIZE, seed=1)
        runner.prepare(batch)
        runner.step()
        assert calls == [MAX_BATCH, 2]
        agrees(runner.logits(), reference(artifacts.source.checkpoint_path, batch))
        assert f"2 engine calls of {MAX_BATCH} images, the last one of 2" in runner.batch_info()["run_as"]
    finally:
        runner.close()


def test_litert_runner_times_the_interpreter_on_the_file_of_each_batch(artifacts):
    needs_litert()
    runner = LiteRtRunner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        for n in (2, 3):
            batch = random_batch(n, size=SIZE, seed=n)
            runner.prepare(batch)
            path = artifacts.get("litert", "fp32", n)
            assert runner.artifact == str(path) and path.name == f"model-fp32-batch{n}.tflite"
            assert runner.predictor.metadata.batch_size == n  # exported at the row's batch
            assert runner.interpreter is runner.predictor.backend.interpreter  # the backend's own interpreter
            runner.step()
            agrees(runner.logits(), reference(artifacts.source.checkpoint_path, batch))
            assert runner.batch_info() == {"threads": 1, "file_batch": n}
    finally:
        runner.close()
    assert artifacts.key("litert", "fp32", 2) == ("litert", "fp32", 2)
    assert artifacts.key("onnx", "fp32", 2) == ("onnx", "fp32")  # a dynamic batch: one file for all


def test_litert_with_one_file_runs_other_batches_as_alexnet_run_does(source, tmp_path):
    """alexnet-report's case: only the file it exported (batch 1), padded and split by the Predictor."""
    needs_litert()
    artifacts = Artifacts(source, tmp_path, per_batch=False)
    runner = LiteRtRunner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        batch = random_batch(3, size=SIZE)
        runner.prepare(batch)
        assert runner.artifact == str(artifacts.get("litert", "fp32")) and runner.file_batch == 1
        runner.step()
        agrees(runner.logits(), reference(source.checkpoint_path, batch))
        assert "as alexnet-run runs a batch of 3: 3 engine calls of 1 image" in runner.batch_info()["run_as"]
    finally:
        runner.close()
    worker_side = reopen_artifacts(artifacts.worker_source(), str(tmp_path), artifacts.export_cache())
    assert worker_side.per_batch is False and worker_side.get("litert", "fp32", 8) == artifacts.get("litert", "fp32")


@pytest.mark.slow  # two int8 exports: calibration and the gate
@pytest.mark.parametrize("runner_class", [ExecuTorchRunner, LiteRtRunner], ids=["executorch", "litert"])
def test_int8_rows_time_the_gated_int8_file(artifacts, monkeypatch, runner_class):
    NEEDS[runner_class.backend]()
    monkeypatch.setattr(quantized, "CALIBRATION_SIZE", 4)
    runner = runner_class(artifacts, "cpu", INT8, threads=1)
    try:
        runner.build()
        batch = random_batch(2, size=SIZE)
        runner.prepare(batch)
        runner.step()
        logits, expected = runner.logits(), reference(artifacts.source.checkpoint_path, batch)
        assert logits.dtype == np.float32 and (logits.argmax(1) == expected.argmax(1)).all()
        info = runner.info | runner.batch_info()
        assert info["quantization"]["gate"]["passed"] and "(PT2E)" in info["quantization"]["scheme"]["quantizer"]
        if runner_class is LiteRtRunner:
            assert runner.feed.dtype == np.int8  # quantized beforehand, as the backend quantizes: not timed
    finally:
        runner.close()


@pytest.mark.parametrize(
    "e2e_runner, plain_runner",
    [(e2e.ExecuTorchEndToEnd, ExecuTorchRunner), (e2e.LiteRtEndToEnd, LiteRtRunner)],
    ids=["executorch", "litert"],
)
def test_e2e_runner_predicts_the_files_as_the_plain_runner_does(artifacts, e2e_runner, plain_runner):
    NEEDS[e2e_runner.backend]()
    runner = e2e_runner(artifacts, "cpu", E2E, threads=1)
    plain = plain_runner(artifacts, "cpu", FP32, threads=1)
    try:
        runner.build()
        plain.build()
        runner.prepare(np.zeros((2, 3, SIZE, SIZE), np.float32))  # only its batch size is taken
        runner.step()
        assert runner.predictor.backend_name == e2e_runner.backend
        plain.prepare(preprocess_batch(runner.last_files, runner.predictor.metadata.preprocess))
        assert runner.artifact == plain.artifact  # the same exported file (LiteRT: the one of batch 2)
        plain.step()
        np.testing.assert_allclose(runner.logits(), plain.logits(), rtol=1e-4, atol=1e-5)
        assert runner.batch_info()["preprocess"] == runner.predictor.metadata.preprocess.to_dict()
    finally:
        runner.close()
        plain.close()


@pytest.mark.slow  # five worker processes
def test_a_tiny_run_has_model_and_e2e_rows_of_both(artifacts):
    needs_executorch()
    needs_litert()
    settings = suite.Settings(
        ["executorch", "litert"],
        ["cpu"],
        [1, 2],
        Budget(iterations=1, rounds=1),
        warmup=1,
        threads=1,
        measure={"sizes": (128,), "mbytes": 8, "repeats": 1},
        remeasure=False,
        precisions=["fp32"],
    )
    cost = roofline.model_cost(artifacts.source.build_model(), artifacts.source.image_size)
    result = suite.run_suite(artifacts, cost, settings)
    rows = {(r.backend, r.variant, r.batch_size): r for r in result.rows}
    for n in (1, 2):
        for backend in ("executorch", "litert"):
            for variant in ("fp32", "fp32 e2e"):
                row = rows[(backend, variant, n)]
                assert row.status == "ok", f"{backend} {variant} batch {n}: {row.reason}"
            assert rows[(backend, "fp32", n)].max_rel_diff < 1e-4
            assert 0.0 <= rows[(backend, "fp32 e2e", n)].preprocess_share <= 1.0
        for variant in ("fp32", "fp32 e2e"):  # each row on the file of its batch, exported once by the parent
            litert = rows[("litert", variant, n)]
            assert litert.artifact == str(artifacts.get("litert", "fp32", n)) and litert.artifact_bytes > 0
        assert rows[("litert", "fp32", n)].info["file_batch"] == n
        assert rows[("executorch", "fp32", n)].info["threads"].startswith("not set")
