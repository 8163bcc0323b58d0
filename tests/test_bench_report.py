"""benchmarks.report: the JSON keeps every figure, the Markdown tables are well formed, the plot is a PNG."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, roofline
from benchmarks.machine import Limits
from benchmarks.suite import Result, Row
from benchmarks.timing import summarize

COST = roofline.ModelCost(
    "torchvision",
    10,
    224,
    parameters=1_000_000,
    flops=2_000_000_000,
    layers=(("features.0", "Conv2d", 2_000_000_000, 1_000_000),),
)
MACHINE = {
    "date": "2026-01-01T00:00:00+00:00",
    "cpu": "Test CPU",
    "physical_cores": 2,
    "logical_cpus": 4,
    "memory_gib": 8.0,
    "os": "Linux",
    "python": "3.11",
    "threads": 2,
    "load_average": [0.1, 0.1, 0.1],
    "libraries": {"torch": "2.13.0", "onnxruntime": "1.32.0"},
    "cuda": None,
}


def make_result() -> Result:
    limits = Limits("cpu", {"fp32": 100.0}, 10.0, {"matmul": {}})
    floors = [roofline.floor(COST, n, gflops=100.0, gbps=10.0) for n in (1, 4)]
    rows = []
    for n, (eager_s, ort_s) in {1: (0.030, 0.020), 4: (0.100, 0.090)}.items():
        for backend, seconds in (("pytorch", eager_s), ("onnxruntime", ort_s)):
            stats = summarize([[seconds, seconds * 1.1], [seconds * 1.05, seconds]])
            fl = floors[0 if n == 1 else 1]
            rows.append(
                Row(
                    backend,
                    "fp32",
                    "cpu",
                    n,
                    latency_ms=stats.to_dict(),
                    throughput_ips=n / stats.mean * 1e3,
                    speedup=eager_s / seconds,
                    floor_ms=fl.floor_ms,
                    floor_fraction=fl.floor_ms / stats.p50,
                    bound=fl.bound,
                    max_rel_diff=1e-6,
                    artifact="/tmp/model.onnx",
                    artifact_bytes=4_000_000,
                )
            )
    rows.append(Row("coreml", "fp32", "cpu", None, status="skipped", reason="Core ML predicts only on macOS"))
    rows.append(Row("openvino", "fp32", "cpu", 4, status="failed", reason="out of memory"))
    return Result(rows, {"cpu": limits}, {"cpu": floors}, ["1 of 4 rows are noisy"])


@pytest.fixture
def doc():
    return report.build_document(
        make_result(),
        command="alexnet-bench --batch-sizes 1,4",
        machine=MACHINE,
        model={"checkpoint": None, "fresh": True, **COST.to_dict()},
        settings={"batch_sizes": [1, 4]},
        note="shared machine",
    )


def test_json_keeps_every_figure(doc, tmp_path):
    path = report.write_json(doc, tmp_path / "bench.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "alexnet-bench/1"
    assert data["command"] == "alexnet-bench --batch-sizes 1,4" and data["note"] == "shared machine"
    assert data["limits"]["cpu"]["matmul_gflops"] == {"fp32": 100.0}
    assert [f["floor_ms"] for f in data["limits"]["cpu"]["floors"]] == [pytest.approx(20.0), pytest.approx(80.0)]
    ok = [r for r in data["rows"] if r["status"] == "ok"]
    assert len(ok) == 4
    for row in ok:
        assert {"p50", "p90", "p99", "mean", "std", "min", "max", "round_p50", "spread"} <= set(row["latency_ms"])
        assert row["throughput_ips"] > 0 and row["speedup"] > 0 and row["floor_fraction"] > 0
    skipped = next(r for r in data["rows"] if r["status"] == "skipped")
    assert skipped["reason"] == "Core ML predicts only on macOS" and skipped["batch_size"] is None
    assert data["warnings"] == ["1 of 4 rows are noisy"]
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temp file left behind


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return table


def test_markdown_tables_parse(doc, tmp_path):
    text = report.write_markdown(doc, tmp_path / "bench.md").read_text()
    assert "Command: `alexnet-bench --batch-sizes 1,4`" in text
    assert "Conditions: shared machine" in text and "Test CPU, 2 cores / 4 threads" in text
    results = table_rows(text, "| backend |")
    header, rule, body = results[0], results[1], results[2:]
    assert all(len(row) == len(header) for row in results), "every row has the header's cell count"
    assert set("".join(rule)) <= set("-:")
    assert len(body) == 6
    first = dict(zip(header, body[0]))  # sorted by batch then p50: onnxruntime at batch 1 first
    assert first["backend"] == "onnxruntime" and first["batch"] == "1"
    assert float(first["p50 ms"]) == pytest.approx(doc["rows"][1]["latency_ms"]["p50"], abs=0.01)
    assert first["speed-up"] == "1.50x" and first["size MB"] == "4.0"
    assert any("skipped: Core ML predicts only on macOS" in row for row in body)
    assert any("failed: out of memory" in row for row in body)
    limits = table_rows(text, "| precision |")
    assert [row[4] for row in limits[2:]] == ["20.00", "80.00"] and limits[2][5] == "compute"
    assert "- 1 of 4 rows are noisy" in text
    fastest = table_rows(text, "| batch | fastest")
    assert fastest[2][:2] == ["1", "onnxruntime fp32"] and fastest[2][3] == "1.50x"
    assert len(fastest) == 4  # header, rule, batch 1 and 4


def test_plot_is_a_png(doc, tmp_path):
    path = report.write_plot(doc, tmp_path / "bench.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
