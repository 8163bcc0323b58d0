"""benchmarks.runners and benchmarks.suite on a tiny budget: every runner yields a complete row,
an unavailable backend or device yields a "skipped: reason" row, a broken one a "failed" row."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from builders import random_batch, reference, saved_checkpoint

from alexnet.model import count_parameters
from benchmarks import roofline, runners, suite
from benchmarks.artifacts import Artifacts, Skip, open_source
from benchmarks.timing import Budget
from benchmarks.variant import PRECISIONS, Variant, variants

QUICK = {"sizes": (128,), "mbytes": 8, "repeats": 1}  # machine limits in a blink (values unimportant here)
CPU_BACKENDS = ["pytorch", "torchscript", "onnxruntime", "openvino", "coreml"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    # torchvision layout at 224: the size every CPU backend (oneDNN pooling included) takes as it is;
    # the tests' 1/16-width model (what is timed does not matter here, that every runner times it)
    workdir = tmp_path_factory.mktemp("bench")
    ckpt = saved_checkpoint(workdir / "small.pth", variant="torchvision", size=224, num_classes=10)
    return Artifacts(open_source(ckpt, workdir), workdir)


@pytest.fixture(scope="module")
def cost(artifacts):
    return roofline.model_cost(artifacts.source.build_model(), artifacts.source.image_size)


def settings(backends, devices=("cpu",), batch_sizes=(1, 2), **kwargs):
    # fp32, fp16, bf16: the int8 rows (an int8 export, NNCF) are tested on a smaller model in test_bench_int8.py
    return suite.Settings(
        list(backends),
        list(devices),
        list(batch_sizes),
        Budget(iterations=2, rounds=2),
        warmup=1,
        threads=2,
        measure=QUICK,
        precisions=("fp32", "fp16", "bf16"),
        **kwargs,
    )


@pytest.fixture(scope="module")
def cpu_result(artifacts, cost):
    return suite.run_suite(artifacts, cost, settings(CPU_BACKENDS))


def by_key(result):
    return {(r.backend, r.variant, r.batch_size): r for r in result.rows}


@pytest.mark.slow  # a timed run of every CPU runner (~90 s): test-all
def test_every_cpu_runner_produces_complete_rows(cpu_result, artifacts):
    rows = by_key(cpu_result)
    parameters = count_parameters(artifacts.source.build_model())
    expected = [
        ("pytorch", "fp32"),
        ("pytorch", "fp32 channels_last"),
        ("torchscript", "fp32"),
        ("torchscript", "fp32 optimized"),
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
    ]
    for backend, variant in expected:
        for n in (1, 2):
            row = rows[(backend, variant, n)]
            assert row.status == "ok", f"{backend} {variant}: {row.reason}"
            stats = row.latency_ms
            assert stats["n"] == 2 and len(stats["round_p50"]) == 2  # 2 iterations over 2 rounds
            assert 0 < stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
            assert row.throughput_ips == pytest.approx(n / (stats["mean"] / 1e3))
            assert row.speedup is not None and row.speedup > 0
            assert row.floor_ms > 0 and 0 < row.floor_fraction and row.bound in ("compute", "memory")
            assert row.artifact_bytes > 4 * parameters  # the fp32 weights are in every artifact
            assert row.build_s is not None and row.warmup_s is not None
            assert row.max_rel_diff < 1e-3, f"{backend} {variant} computes something else than eager"
    assert rows[("pytorch", "fp32", 1)].speedup == 1.0  # the baseline against itself
    assert rows[("onnxruntime", "fp32", 1)].info["providers"] == ["CPUExecutionProvider"]
    openvino = rows[("openvino", "fp32", 1)]  # the exported IR, as alexnet-run compiles it
    assert openvino.artifact.endswith(".xml") and openvino.info["config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert openvino.max_rel_diff < 1e-4  # fp32 where it is not asked otherwise: OpenVINO's bf16 would give ~1e-3
    assert openvino.info["config"]["INFERENCE_NUM_THREADS"] == 2 and "quantization" not in openvino.info


@pytest.mark.slow  # a timed run of every CPU runner (~90 s): test-all
def test_every_deployable_cpu_backend_has_an_e2e_row(cpu_result):
    rows = by_key(cpu_result)
    for backend in ("pytorch", "torchscript", "onnxruntime", "openvino"):  # pytorch: the runtime's plugin
        for n in (1, 2):
            row = rows[(backend, "fp32 e2e", n)]
            assert row.status == "ok", f"{backend} e2e: {row.reason}"
            assert row.throughput_ips > 0 and 0.0 <= row.preprocess_share <= 1.0
    if sys.platform != "darwin":
        assert rows[("coreml", "fp32 e2e", None)].status == "skipped"


def test_variant_labels_are_the_names_rows_and_reports_show():
    assert Variant("fp32").label == "fp32"
    assert Variant("fp16", ("channels_last",)).label == "fp16 channels_last"
    assert [v.label for v in variants("openvino", "cpu")] == [
        "fp32",
        "int8",
        "fp32 e2e",
        "int8 e2e",
        "fp32 e2e 12mp",
        "int8 e2e 12mp",
    ]
    every = {
        v
        for b in ("pytorch", "torch.compile", "torchscript", "onnxruntime", "openvino", "coreml")
        for d in ("cpu", "cuda", "mps")
        for v in variants(b, d)
    }
    assert {v.precision for v in every} == set(PRECISIONS)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Variant("fp8")


@pytest.mark.slow  # a timed run of every CPU runner (~90 s): test-all
def test_limits_and_floors_are_reported_per_device(cpu_result):
    limits = cpu_result.limits["cpu"]
    assert limits.matmul_gflops["fp32"] > 0 and limits.bandwidth_gbps > 0
    assert len(limits.details["measurements"]) == 3  # before the run and after each batch size, best kept
    assert [f.batch_size for f in cpu_result.floors["cpu"]] == [1, 2]


@pytest.mark.slow  # a timed run of every CPU runner (~90 s): test-all
@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_off_macos_is_a_skipped_row(cpu_result):
    row = by_key(cpu_result)[("coreml", "fp32", None)]
    assert row.status == "skipped" and "macOS" in row.reason


class NoOpenVinoRunner(runners.OpenVinoRunner):
    """OpenVINO in a worker process where it is not installed (the worker imports this class by name)."""

    def _build(self) -> None:
        sys.modules["openvino"] = None  # import openvino -> ImportError; in the worker's own process only
        super()._build()


def test_openvino_runner_times_the_runtime_backend_on_the_exported_ir(artifacts, monkeypatch):
    import runtime
    from runtime.backends.openvino_backend import OpenVinoBackend

    seen = []
    real_load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *a, **k: seen.append((a, k)) or real_load(*a, **k))
    runner = runners.OpenVinoRunner(artifacts, "cpu", Variant("fp32"), threads=2)
    try:
        runner.build()
        path = artifacts.get("openvino", "fp32")
        assert path.suffix == ".xml" and runner.artifact == str(path)  # what alexnet-export writes
        assert runner.artifact_bytes > path.stat().st_size  # with its .bin
        assert seen == [((path,), {"backend": "openvino", "device": "cpu", "threads": 2})]  # as alexnet-run
        assert isinstance(runner.predictor.backend, OpenVinoBackend)
        assert runner.compiled is runner.predictor.backend.compiled  # step() runs the backend's own request
        assert runner.request is runner.predictor.backend.request
        assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        batch = random_batch(2, size=artifacts.source.image_size)
        runner.prepare(batch)
        runner.step()
        expected = reference(artifacts.source.checkpoint_path, batch)
        assert np.abs(runner.logits() - expected).max() <= 1e-4 * np.abs(expected).max()  # fp32, not bf16
    finally:
        runner.close()


@pytest.mark.slow  # the pytorch baseline is timed too (~35 s): test-all
def test_missing_openvino_is_a_skipped_row(artifacts, cost, monkeypatch):
    monkeypatch.setitem(runners.RUNNERS, "openvino", NoOpenVinoRunner)
    result = suite.run_suite(artifacts, cost, settings(["openvino"], batch_sizes=[1]))
    rows = by_key(result)
    assert rows[("openvino", "fp32", None)].status == "skipped"
    assert rows[("openvino", "fp32", None)].reason.startswith("openvino not installed")
    assert rows[("pytorch", "fp32", 1)].status == "ok"  # the baseline runs even when not asked for


def test_missing_device_gives_a_reason_for_every_row(artifacts, cost, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = suite.run_suite(artifacts, cost, settings(["pytorch", "onnxruntime"], devices=["cuda"]))
    assert result.rows and all(r.status == "skipped" and "no CUDA device" in r.reason for r in result.rows)
    assert {r.variant for r in result.rows if r.backend == "pytorch"} == {"fp32", "fp16", "bf16", "fp16 channels_last"}
    assert result.limits == {}


class BrokenRunner(runners.Runner):
    """Builds, then fails at batch 2: its batch-1 row must survive, its batch-2 row say why."""

    backend = "broken"

    def _build(self) -> None:
        pass

    def prepare(self, batch: np.ndarray) -> None:
        if len(batch) == 2:
            raise RuntimeError("no kernel for batch 2\nsecond line")
        self.batch = batch

    def step(self) -> None:
        self.out = np.zeros((len(self.batch), 10), np.float32)

    def logits(self) -> np.ndarray:
        return self.out


class UnbuildableRunner(BrokenRunner):
    backend = "unbuildable"

    def _build(self) -> None:
        raise ValueError("library crashed")


def test_failures_become_rows_and_the_rest_runs_on(artifacts, cost, monkeypatch):
    monkeypatch.setitem(runners.RUNNERS, "broken", BrokenRunner)
    monkeypatch.setitem(runners.RUNNERS, "unbuildable", UnbuildableRunner)
    rows = by_key(suite.run_suite(artifacts, cost, settings(["broken", "unbuildable"])))
    assert rows[("broken", "fp32", 1)].status == "ok"
    assert rows[("broken", "fp32", 2)].status == "failed"
    assert rows[("broken", "fp32", 2)].reason == "no kernel for batch 2"
    assert rows[("unbuildable", "fp32", None)].status == "failed"
    assert rows[("unbuildable", "fp32", None)].reason == "library crashed"
    assert rows[("pytorch", "fp32", 2)].status == "ok"


def test_skip_from_an_export_is_cached(artifacts, monkeypatch):
    import export

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise export.ExportError("converter missing")

    monkeypatch.setattr(export, "export_artifact", refuse)
    fresh = Artifacts(artifacts.source, artifacts.workdir)
    for _ in range(2):
        with pytest.raises(Skip, match="cannot export coreml .*converter missing"):
            fresh.get("coreml")
    assert len(calls) == 1


@pytest.mark.slow
def test_torch_compile_runner(artifacts, cost):
    rows = by_key(suite.run_suite(artifacts, cost, settings(["torch.compile"], batch_sizes=[1])))
    row = rows.get(("torch.compile", "fp32", 1)) or rows[("torch.compile", "fp32", None)]
    assert row.status == "ok" or (row.status == "skipped" and row.reason.startswith("torch.compile"))
    if row.status == "ok":
        assert row.max_rel_diff < 1e-3 and row.info["inductor_options"] == {"freezing": True}


@pytest.mark.gpu
def test_cuda_rows(artifacts, cost):
    result = suite.run_suite(artifacts, cost, settings(["pytorch", "torchscript", "onnxruntime"], devices=["cuda"]))
    rows = by_key(result)
    for variant in ("fp32", "fp16", "bf16", "fp16 channels_last"):
        assert rows[("pytorch", variant, 2)].status == "ok"
        assert rows[("pytorch", variant, 2)].max_rel_diff < 5e-2  # half precision, same answer
    assert result.limits["cuda"].matmul_gflops["fp16"] > result.limits["cuda"].matmul_gflops["fp32"] / 2
    ort = [r for r in result.rows if r.backend == "onnxruntime"]
    assert all(r.status == "ok" or "CUDAExecutionProvider" in r.reason for r in ort)


@pytest.mark.macos
def test_mps_and_coreml_rows(artifacts, cost):
    result = suite.run_suite(artifacts, cost, settings(["pytorch", "coreml"], devices=["cpu", "mps"], batch_sizes=[1]))
    rows = {(r.backend, r.variant, r.device): r for r in result.rows}
    assert rows[("pytorch", "fp32", "mps")].status == "ok"
    assert rows[("coreml", "fp32", "cpu")].status == "ok", rows[("coreml", "fp32", "cpu")].reason
    assert rows[("coreml", "fp32", "mps")].status == "ok", rows[("coreml", "fp32", "mps")].reason


def test_artifact_bytes_counts_an_openvino_ir_with_its_weights(tmp_path):
    from runtime.formats import artifact_bytes

    (tmp_path / "model.xml").write_bytes(b"x" * 10)
    (tmp_path / "model.bin").write_bytes(b"w" * 100)
    (tmp_path / "model.onnx").write_bytes(b"o" * 7)
    (tmp_path / "model.mlpackage").mkdir()
    (tmp_path / "model.mlpackage" / "weights").write_bytes(b"c" * 5)
    assert artifact_bytes(tmp_path / "model.xml") == 110
    assert artifact_bytes(tmp_path / "model.onnx") == 7
    assert artifact_bytes(tmp_path / "model.mlpackage") == 5
    assert artifact_bytes(tmp_path / "missing.onnx") is None and artifact_bytes(None) is None
