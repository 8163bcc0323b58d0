"""int8 rows of alexnet-bench: export's int8 ONNX on onnxruntime and export's int8 OpenVINO IR on OpenVINO, each
opened as alexnet-run opens it and asked for with the same options, the int8 floor, and how the report shows them.

In the full-size run, export's int8 ONNX exporter is stood in for by onnxruntime's own static quantizer (a real
QDQ int8 model): these tests check the benchmark's side (what it asks export for, what it times), and export's
exporter, with its accuracy gate, is tested in test_quantize.py. The int8 IR is export's own (NNCF), in seconds
on the tests' small model. A cifar AlexNet keeps every step to seconds; the machine limits are stubbed.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
from builders import random_batch, saved_checkpoint

from benchmarks import int8, notices, ort_matmul, quantized, report, roofline, suite
from benchmarks.artifacts import Artifacts, Skip, open_source
from benchmarks.machine import Limits, measure_limits
from benchmarks.onnx_runners import OnnxRuntimeRunner
from benchmarks.openvino_runner import OpenVinoRunner
from benchmarks.timing import Budget
from benchmarks.variant import INT8, Variant, variants

CALIBRATION = 4  # images per int8 export here (the benchmark's own count is quantized.CALIBRATION_SIZE)
OPENVINO_INT8 = next(v for v in variants("openvino", "cpu") if v.precision == "int8")  # its int8 row's variant


def spy_exporter(calls: list[dict], fp32_onnx=None):
    """export_artifact, recording every int8 call; with `fp32_onnx` (the benchmark's own fp32 ONNX, `fp32_onnx()`),
    an int8 ONNX is that file quantized by onnxruntime's static quantizer instead of export's gated exporter."""
    import export

    real = export.export_artifact

    def export_artifact(checkpoint, fmt, output=None, *, precision="fp32", quantize=None, **kwargs):
        if precision == "int8":
            calls.append({"fmt": fmt, "quantize": quantize, **kwargs})
        if precision != "int8" or fmt != "onnx" or fp32_onnx is None:
            return real(checkpoint, fmt, output, precision=precision, quantize=quantize, **kwargs)
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        size = open_source(checkpoint, Path(output).parent).image_size
        feeds = iter([{"input": random_batch(1, size, seed=i)} for i in range(quantize.calibration_size)])
        reader = type("Reader", (CalibrationDataReader,), {"get_next": lambda self: next(feeds, None)})()
        quantize_static(
            str(fp32_onnx()), str(output), reader, quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8
        )
        _restamp(Path(output))  # the quantizer kept the fp32 model's metadata, weights hash included
        return Path(output)

    return export_artifact


def _restamp(path: Path) -> None:
    """Record the hash of the weights the file now holds, as export's int8 exporter does."""
    import onnx

    from export.to_onnx import stamp_weights_sha256

    proto = onnx.load(str(path))
    stamp_weights_sha256(proto)
    onnx.save(proto, str(path))


def fake_limits(device, precisions, **_):
    rates = {"fp32": 50.0, "int8": 100.0} if "int8" in precisions else {"fp32": 50.0}
    return Limits(device, rates, 5.0, {"stub": True}, {"int8": "int8: a stub note"} if "int8" in precisions else {})


def settings(backends=("onnxruntime", "openvino"), precisions=("fp32", "int8"), batch_sizes=(1, 2)):
    return suite.Settings(
        list(backends),
        ["cpu"],
        list(batch_sizes),
        Budget(iterations=2, rounds=2),
        warmup=1,
        threads=2,
        precisions=list(precisions),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One suite run with the fp32 and int8 rows of onnxruntime and OpenVINO, and the int8 exports it asked for."""
    import export

    workdir = tmp_path_factory.mktemp("int8")
    calls: list[dict] = []
    with pytest.MonkeyPatch.context() as mp:
        artifacts = Artifacts(open_source(None, workdir, variant="cifar", num_classes=10), workdir)
        mp.setattr(export, "export_artifact", spy_exporter(calls, lambda: artifacts.get("onnx", "fp32")))
        mp.setattr(quantized, "CALIBRATION_SIZE", CALIBRATION)
        mp.setattr(suite, "measure_limits", fake_limits)
        mp.setattr(suite, "cpu_peak", lambda *a, **k: None)  # the stub's rates set the floor, whatever this CPU
        cost = roofline.model_cost(artifacts.source.build_model(), artifacts.source.image_size)
        result = suite.run_suite(artifacts, cost, settings())
    return types.SimpleNamespace(result=result, calls=calls, artifacts=artifacts, cost=cost, workdir=workdir)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The tests' small cifar model (fresh: export's gate opened wide) with its int8 IR exported, and the call."""
    import export

    workdir = tmp_path_factory.mktemp("int8-small")
    ckpt = saved_checkpoint(workdir / "small.pth", variant="cifar", size=32, num_classes=10)
    source = dataclasses.replace(open_source(ckpt, workdir), given=False)
    artifacts, calls = Artifacts(source, workdir), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export, "export_artifact", spy_exporter(calls))
        mp.setattr(quantized, "CALIBRATION_SIZE", CALIBRATION)
        artifacts.get("openvino", "int8")
    cost = roofline.model_cost(source.build_model(), source.image_size)
    return types.SimpleNamespace(artifacts=artifacts, calls=calls, cost=cost, workdir=workdir)


def rows_of(result) -> dict:
    return {(r.backend, r.variant, r.batch_size): r for r in result.rows}


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_int8_exports_are_made_once_each_with_the_same_forced_synthetic_calibration(run):
    assert sorted(call["fmt"] for call in run.calls) == ["onnx", "openvino"]  # one artifact for every batch size
    onnx, openvino = sorted(run.calls, key=lambda call: call["fmt"])
    options = onnx["quantize"]
    assert openvino["quantize"] == options  # both quantizers calibrate and gate on the same images
    assert (options.calibration, options.calibration_size, options.force) == ("synthetic", CALIBRATION, True)
    assert options.gate_size == quantized.GATE_SIZE
    # a fresh model: the gate opened wide, so that export does not keep layers in fp32 over arbitrary predictions
    assert options.max_agreement_loss == options.max_accuracy_drop == 1.0
    for call in run.calls:
        assert call["batch_size"] is None
        assert call["echo"]("calibrated on 4 images") is None  # quiet: no lines through the progress bar


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_int8_rows_are_complete_small_and_close_to_eager(run):
    rows = rows_of(run.result)
    for backend, variant in (("onnxruntime", "int8"), ("openvino", OPENVINO_INT8.label)):
        for n in (1, 2):
            row = rows[(backend, variant, n)]
            assert row.status == "ok", f"{backend} {variant}: {row.reason}"
            assert row.precision == "int8" and row.latency_ms["n"] == 2 and row.speedup > 0
            assert row.max_rel_diff < 0.2, f"{backend} {variant}: int8 logits far from eager's"
            assert row.artifact_bytes < 0.3 * rows[(backend, "fp32", n)].artifact_bytes  # 1 byte per weight
            expected = roofline.floor(run.cost, n, gflops=100.0, gbps=5.0, precision="int8")  # the stub's int8 rate
            assert row.floor_ms == pytest.approx(expected.floor_ms)
    openvino = rows[("openvino", OPENVINO_INT8.label, 1)]
    assert openvino.artifact.endswith(".xml") and rows[("openvino", "fp32", 1)].artifact.endswith(".xml")
    assert openvino.info["quantization"]["scheme"]["quantizer"].startswith("nncf")
    assert [f.precision for f in run.result.floors["cpu"]] == ["fp32", "fp32", "int8", "int8"]


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_onnxruntime_opens_sessions_as_alexnet_run_does(run, monkeypatch):
    import runtime

    seen = []
    real_load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *a, **k: seen.append((a, k)) or real_load(*a, **k))
    runner = OnnxRuntimeRunner(run.artifacts, "cpu", INT8, threads=2)
    runner.build()
    try:
        assert seen == [
            ((runner.artifacts.get("onnx", "int8"),), {"backend": "onnxruntime", "device": "cpu", "threads": 2})
        ]
        assert runner.info["providers"] == ["CPUExecutionProvider"]
    finally:
        runner.close()


@pytest.mark.slow  # an OpenVINO int8 export, calibrated and gated (~35 s): test-all
def test_openvino_int8_row_reads_the_exported_ir_with_its_gate_record(small, monkeypatch):
    import runtime

    (call,) = small.calls  # export_artifact(ckpt, "openvino", precision="int8"), as int8 ONNX is asked for
    expected = dataclasses.replace(quantized.quantize_options(small.artifacts.source), calibration_size=CALIBRATION)
    assert call["fmt"] == "openvino" and call["quantize"] == expected and call["batch_size"] is None
    monkeypatch.setattr(suite, "measure_limits", fake_limits)
    monkeypatch.setattr(suite, "cpu_peak", lambda *a, **k: None)
    rows = rows_of(suite.run_suite(small.artifacts, small.cost, settings(["openvino"], ["int8"], [1])))
    row = rows[("openvino", OPENVINO_INT8.label, 1)]
    assert row.status == "ok", row.reason
    path = small.artifacts.get("openvino", "int8")
    assert row.artifact == str(path) and path.suffix == ".xml"
    with runtime.load(path, backend="openvino", device="cpu") as predictor:
        record = predictor.metadata.quantization
    assert predictor.metadata.precision == "int8" and row.info["quantization"] == record  # the file's own record
    assert record["gate"]["passed"] and record["gate"]["step"] == "all layers int8" and not record["fp32_layers"]
    assert record["scheme"]["quantizer"].startswith("nncf") and record["calibration"]["images"] == CALIBRATION
    # f32 is the precision of what is not quantized: the backend's setting, int8 layers still run in int8
    assert row.info["config"]["INFERENCE_PRECISION_HINT"] == "f32" and row.info["config"]["INFERENCE_NUM_THREADS"] == 2
    assert row.max_rel_diff < 0.2 and ("openvino", "fp32", None) not in rows and ("openvino", "fp32", 1) not in rows


@pytest.mark.slow  # an OpenVINO int8 export, calibrated and gated (~35 s): test-all
def test_missing_nncf_is_a_skipped_row(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    monkeypatch.setattr(suite, "measure_limits", fake_limits)
    fresh = Artifacts(small.artifacts.source, small.workdir / "no-nncf")
    fresh.workdir.mkdir()
    result = suite.run_suite(fresh, small.cost, settings(["openvino"], ["int8"], [1]))
    rows = rows_of(result)
    assert rows[("openvino", OPENVINO_INT8.label, None)].status == "skipped"
    assert rows[("openvino", OPENVINO_INT8.label, None)].reason.startswith("nncf not installed")
    assert rows[("pytorch", "fp32", 1)].status == "ok" and ("openvino", "fp32", None) not in rows
    assert not list(fresh.workdir.glob("*.xml")) and not list(fresh.workdir.glob("*.bin"))  # nothing half-written


def test_openvino_on_cuda_is_a_skip():
    with pytest.raises(Skip, match="OpenVINO has no CUDA device"):
        OpenVinoRunner(None, "cuda", OPENVINO_INT8).build()  # refused before any artifact is asked for


def test_precisions_pick_the_variants():
    pairs = suite.runner_pairs(["onnxruntime", "openvino", "pytorch"], "cpu", ["int8"])
    assert [(b, v.label) for b, v in pairs] == [
        ("pytorch", "fp32"),  # the baseline, always
        ("onnxruntime", "int8"),
        ("onnxruntime", "int8 e2e"),  # the int8 file through alexnet-run's path, on both photo sets
        ("onnxruntime", "int8 e2e 12mp"),
        ("openvino", OPENVINO_INT8.label),
        ("openvino", "int8 e2e"),
        ("openvino", "int8 e2e 12mp"),
    ]
    assert all(v.precision == "int8" for _, v in pairs[1:])
    every = suite.runner_pairs(["onnxruntime", "openvino"], "cpu")
    assert ("onnxruntime", Variant("fp32")) in every and ("onnxruntime", INT8) in every
    assert all(v.precision != "int8" for _, v in suite.runner_pairs(["onnxruntime"], "cuda"))  # int8: CPU only


def test_an_int8_artifact_with_fp32_layers_or_a_failed_gate_is_a_warning():
    def row(artifact, record):
        return suite.Row(
            "onnxruntime", "int8", "cpu", 1, precision="int8", artifact=artifact, info={"quantization": record}
        )

    all_int8 = {"gate": {"passed": True, "step": "all layers int8"}, "fp32_layers": []}
    kept = {"gate": {"passed": False, "step": "2 layers fp32"}, "fp32_layers": ["features.0", "classifier.6"]}
    assert notices._int8_warnings([row("a.onnx", all_int8), row("b.onnx", None)]) == []
    (warning,) = notices._int8_warnings([row("c.onnx", kept), row("c.onnx", kept)])  # one per artifact, not per row
    assert "c.onnx" in warning and "gate failed" in warning and "features.0, classifier.6" in warning


def test_int8_floor_reads_a_byte_per_weight_at_the_int8_rate():
    cost = roofline.ModelCost("toy", 10, 32, parameters=1_000_000, flops=2_000_000_000)
    fp32 = roofline.floor(cost, 4, gflops=100.0, gbps=10.0)
    low = roofline.floor(cost, 4, gflops=400.0, gbps=10.0, precision="int8")
    assert cost.weight_bytes("int8") == cost.weight_bytes("fp32") // 4 == 1_000_000
    assert low.memory_ms == pytest.approx(fp32.memory_ms / 4) == pytest.approx(0.1)  # 1 MB at 10 GB/s
    assert low.compute_ms == pytest.approx(20.0)  # 4 x 2 GOP at 400 GOP/s
    assert cost.to_dict()["weight_bytes"]["int8"] == 1_000_000


@pytest.mark.parametrize("isa, factor", [("avx2", 2.0), ("avx512", 2.0), ("vnni", 4.0), ("arm64", 4.0), ("other", 1.0)])
def test_int8_rate_is_the_larger_of_measured_and_derived(monkeypatch, isa, factor):
    monkeypatch.setattr(int8, "instruction_set", lambda: isa)
    monkeypatch.setattr(ort_matmul, "measure_matmul_int8_onnxruntime", lambda *a, **k: {128: 150.0})
    rates, basis = int8.measure_int8(100.0, (128,))
    assert rates == {"onnxruntime MatMulInteger 128": 150.0, f"fp32 x {factor:g} ({isa})": 100.0 * factor}
    assert basis["isa"] == isa and basis["factor"] == factor and isa in basis["note"]


def test_instruction_set_comes_from_runtime_cpu(monkeypatch):
    module = types.ModuleType("runtime.cpu")
    module.detect_cpu = lambda: "vnni"
    monkeypatch.setitem(sys.modules, "runtime.cpu", module)
    assert int8.instruction_set() == "vnni"


def test_measure_limits_adds_int8_on_the_cpu(monkeypatch):
    monkeypatch.setattr(int8, "instruction_set", lambda: "avx2")
    limits = measure_limits("cpu", ("fp32", "int8"), sizes=(128,), mbytes=8, repeats=1)
    assert limits.matmul_gflops["int8"] >= 2 * limits.matmul_gflops["fp32"]
    assert limits.details["matmul"]["int8"]["onnxruntime MatMulInteger 128"] > 0  # measured for real
    assert "avx2" in limits.notes["int8"] and limits.details["int8"]["factor"] == 2.0


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_report_shows_int8_limits_and_a_fastest_int8_table(run):
    machine = {"date": "2026-01-01", "cpu": "Test CPU", "physical_cores": 2, "logical_cpus": 2, "os": "Linux"}
    machine |= {"python": "3.11", "threads": 2, "libraries": {"nncf": "3.4.0"}}
    model = {"checkpoint": None, "fresh": True, **run.cost.to_dict()}
    doc = report.build_document(run.result, command="alexnet-bench", machine=machine, model=model, settings={})
    text = report.render_markdown(doc)
    assert "int8 100.0 GOP/s" in text and "- int8: a stub note" in text and "nncf 3.4.0" in text
    lines = text.splitlines()
    start = lines.index("### Fastest deployed backend, int8") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header[-1] == "size vs fp32"
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2 : start + 4]]
    assert all(len(row) == len(header) for row in body) and [row[0] for row in body] == ["1", "2"]
    names = ("onnxruntime int8", f"openvino {OPENVINO_INT8.label}")
    assert all(row[1] in names and 0 < int(row[-1].rstrip("%")) < 30 for row in body)
    assert "| int8 | 1 |" in text  # the int8 floor rows of the limits table


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_a_given_checkpoint_keeps_exports_gate(run):
    given = dataclasses.replace(run.artifacts.source, given=True)
    options = quantized.quantize_options(given)
    assert options.force and options.max_agreement_loss < 1.0 and options.max_accuracy_drop < 1.0
