"""int8 rows of alexnet-bench: export's int8 ONNX on onnxruntime (opened as alexnet-run opens it), OpenVINO's
NNCF peer calibrated on the same images, the int8 floor, and how the report shows them.

export's int8 exporter is stood in for by onnxruntime's own static quantizer (a real QDQ int8 model) fed by
the benchmark's calibration images: these tests check the benchmark's side (what it asks export for, what it
times), and export's exporter, with its accuracy gate, is tested in test_quantize.py. A cifar AlexNet keeps
every step to seconds; the machine limits are stubbed.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks import int8, notices, ort_matmul, quantized, report, roofline, suite
from benchmarks.artifacts import Artifacts, Skip, open_source
from benchmarks.machine import Limits, measure_limits
from benchmarks.onnx_runners import OnnxRuntimeRunner, OpenVinoRunner
from benchmarks.timing import Budget
from benchmarks.variant import INT8, Variant

CALIBRATION = 4  # images per quantizer here (the benchmark's own count is quantized.CALIBRATION_SIZE)


def stand_in_exporter(calls: list[dict], fp32_onnx):
    """export_artifact, except that precision="int8" quantizes the fp32 ONNX (`fp32_onnx()`, the benchmark's
    own) with onnxruntime's quantizer, on the benchmark's calibration images."""
    import export

    real = export.export_artifact

    def export_artifact(checkpoint, fmt, output=None, *, precision="fp32", quantize=None, **kwargs):
        if precision != "int8":
            return real(checkpoint, fmt, output, precision=precision, **kwargs)
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        calls.append({"fmt": fmt, "quantize": quantize, **kwargs})
        source = open_source(checkpoint, Path(output).parent)
        feeds = iter([{"input": x} for x in quantized.calibration_inputs(source, quantize.calibration_size)])
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
    """One suite run with the fp32 and int8 rows of onnxruntime and OpenVINO, and what it was fed."""
    import export

    workdir = tmp_path_factory.mktemp("int8")
    calls: list[dict] = []
    calibrations: list[list[np.ndarray]] = []
    real_inputs = quantized.calibration_inputs

    def spy_inputs(source, count=None):
        calibrations.append(real_inputs(source, count))
        return calibrations[-1]

    with pytest.MonkeyPatch.context() as mp:
        artifacts = Artifacts(open_source(None, workdir, variant="cifar", num_classes=10), workdir)
        mp.setattr(export, "export_artifact", stand_in_exporter(calls, lambda: artifacts.get("onnx", "fp32")))
        mp.setattr(quantized, "CALIBRATION_SIZE", CALIBRATION)
        mp.setattr(quantized, "calibration_inputs", spy_inputs)
        mp.setattr(suite, "measure_limits", fake_limits)
        mp.setattr(suite, "cpu_peak", lambda *a, **k: None)  # the stub's rates set the floor, whatever this CPU
        cost = roofline.model_cost(artifacts.source.build_model(), artifacts.source.image_size)
        result = suite.run_suite(artifacts, cost, settings())
    return types.SimpleNamespace(
        result=result, calls=calls, calibrations=calibrations, artifacts=artifacts, cost=cost, workdir=workdir
    )


def rows_of(result) -> dict:
    return {(r.backend, r.variant, r.batch_size): r for r in result.rows}


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_int8_onnx_is_exported_once_with_forced_synthetic_calibration(run):
    assert len(run.calls) == 1  # one artifact for every batch size
    options = run.calls[0]["quantize"]
    assert (options.calibration, options.calibration_size, options.force) == ("synthetic", CALIBRATION, True)
    assert options.gate_size == quantized.GATE_SIZE
    # a fresh model: the gate opened wide, so that export does not keep layers in fp32 over arbitrary predictions
    assert options.max_agreement_loss == options.max_accuracy_drop == 1.0
    assert run.calls[0]["fmt"] == "onnx" and run.calls[0]["batch_size"] is None
    assert run.calls[0]["echo"]("calibrated on 4 images") is None  # quiet: no lines through the progress bar


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_both_quantizers_calibrate_on_the_same_images(run):
    onnx_images, nncf_images = run.calibrations  # the stand-in exporter's call, then NNCF's
    assert len(onnx_images) == len(nncf_images) == CALIBRATION
    assert all(np.array_equal(a, b) for a, b in zip(onnx_images, nncf_images))
    assert onnx_images[0].shape == (1, 3, 32, 32) and onnx_images[0].dtype == np.float32
    assert not np.array_equal(onnx_images[0], onnx_images[1])


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_int8_rows_are_complete_small_and_close_to_eager(run):
    rows = rows_of(run.result)
    for backend, variant in (("onnxruntime", "int8"), ("openvino", "int8 nncf")):
        for n in (1, 2):
            row = rows[(backend, variant, n)]
            assert row.status == "ok", f"{backend} {variant}: {row.reason}"
            assert row.precision == "int8" and row.latency_ms["n"] == 2 and row.speedup > 0
            assert row.max_rel_diff < 0.2, f"{backend} {variant}: int8 logits far from eager's"
            assert row.artifact_bytes < 0.3 * rows[(backend, "fp32", n)].artifact_bytes  # 1 byte per weight
            expected = roofline.floor(run.cost, n, gflops=100.0, gbps=5.0, precision="int8")  # the stub's int8 rate
            assert row.floor_ms == pytest.approx(expected.floor_ms)
    nncf = rows[("openvino", "int8 nncf", 1)]
    assert nncf.artifact.endswith(".xml") and nncf.info["quantizer"].startswith("nncf")
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


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_missing_nncf_is_a_skipped_row(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    artifacts = Artifacts(run.artifacts.source, run.workdir, {("onnx", "fp32"): run.artifacts.get("onnx", "fp32")})
    monkeypatch.setattr(suite, "measure_limits", fake_limits)
    result = suite.run_suite(artifacts, run.cost, settings(["openvino"], ["int8"], [1]))
    rows = rows_of(result)
    assert rows[("openvino", "int8 nncf", None)].status == "skipped"
    assert rows[("openvino", "int8 nncf", None)].reason.startswith("nncf not installed")
    assert rows[("pytorch", "fp32", 1)].status == "ok" and ("openvino", "fp32", None) not in rows


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_openvino_on_cuda_is_a_skip(run):
    with pytest.raises(Skip, match="OpenVINO has no CUDA device"):
        OpenVinoRunner(run.artifacts, "cuda", Variant("int8", ("nncf",))).build()


def test_precisions_pick_the_variants():
    pairs = suite.runner_pairs(["onnxruntime", "openvino", "pytorch"], "cpu", ["int8"])
    assert [(b, v.label) for b, v in pairs] == [
        ("pytorch", "fp32"),  # the baseline, always
        ("onnxruntime", "int8"),
        ("openvino", "int8 nncf"),
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
    assert all(
        row[1] in ("onnxruntime int8", "openvino int8 nncf") and 0 < int(row[-1].rstrip("%")) < 30 for row in body
    )
    assert "| int8 | 1 |" in text  # the int8 floor rows of the limits table


@pytest.mark.slow  # the full-size cifar model: int8 files a quarter of fp32, as deployed
def test_a_given_checkpoint_keeps_exports_gate(run):
    given = dataclasses.replace(run.artifacts.source, given=True)
    options = quantized.quantize_options(given)
    assert options.force and options.max_agreement_loss < 1.0 and options.max_accuracy_drop < 1.0
