"""alexnet-report: the recommendation logic on hand-made rows, the command's errors, and one whole
report on the untrained cifar checkpoint with a tiny budget (timings are never asserted)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmarks import recommend
from benchmarks.report_cli import main

GATE = {"max_agreement_loss": 0.01, "max_accuracy_drop": 0.01}


def _entry(label, *, top1, agreement, size_mb, timings, status="ok", check_passed=True):
    """An entry dict as the report keeps it; timings: {batch: (p50 ms, images/s)} on cpu."""
    fmt, precision = label.split()
    batches = [{"batch_size": n, "p50_ms": p50, "throughput_ips": ips} for n, (p50, ips) in timings.items()]
    return {
        "label": label,
        "format": fmt,
        "precision": precision,
        "status": status,
        "check_passed": check_passed,
        "top1": top1,
        "agreement": agreement,
        "size_bytes": int(size_mb * 1e6),
        "devices": {"cpu": {"status": "ok", "batches": batches}},
    }


def _hand_made_rows():
    return [
        _entry("checkpoint fp32", top1=0.90, agreement=1.0, size_mb=244, timings={1: (20.0, 50), 32: (400.0, 80)}),
        _entry("onnx fp32", top1=0.90, agreement=1.0, size_mb=244, timings={1: (10.0, 100), 32: (200.0, 160)}),
        # within the gate: agreement 99.0% exactly, top-1 0.5 points lower
        _entry("onnx int8", top1=0.895, agreement=0.99, size_mb=61, timings={1: (4.0, 250), 32: (70.0, 457)}),
        # faster and smaller still, but out of the gate: agreement 97%
        _entry("coreml int8", top1=0.90, agreement=0.97, size_mb=30, timings={1: (1.0, 1000), 32: (10.0, 3200)}),
        # accurate enough to agree, but top-1 dropped 2 points
        _entry("onnx fp16", top1=0.88, agreement=0.995, size_mb=122, timings={1: (2.0, 500), 32: (30.0, 1066)}),
        # validation failed: never recommended
        _entry("torchscript fp16", top1=0.90, agreement=1.0, size_mb=20, timings={1: (0.5, 2000)}, check_passed=False),
        # throughput peaks at batch 8 (the largest batch is not the best one)
        _entry("torchscript fp32", top1=0.90, agreement=1.0, size_mb=244, timings={8: (12.0, 666), 32: (64.0, 500)}),
    ]


def test_recommendations_within_the_gate():
    recs = {r["goal"]: r for r in recommend.recommend(_hand_made_rows(), "cpu", GATE)}
    assert recs["lowest latency"]["label"] == "onnx int8" and recs["lowest latency"]["value"] == 4.0
    assert recs["smallest"]["label"] == "onnx int8" and recs["smallest"]["value"] == 61_000_000
    assert recs["highest throughput"]["label"] == "torchscript fp32" and recs["highest throughput"]["value"] == 666
    assert "at batch 8" in recs["highest throughput"]["why"]
    why = recs["lowest latency"]["why"]
    assert "4.00 ms at batch 1" in why and "top-1 89.50% (fp32 checkpoint 90.00%)" in why and "99.00%" in why
    assert "next: onnx fp32 p50 10.00 ms at batch 1" in why  # the runner-up, with its number
    # the one line of why it wins, for "Ship this"
    assert recs["smallest"]["reason"] == (
        "the smallest file of the 4 artifacts within the accuracy gate timed on cpu; next: checkpoint fp32 244.0 MB"
    )


def test_exclusions_say_who_left_each_out_and_why():
    rows = _hand_made_rows()
    rows[1]["devices"]["cpu"] = {"status": "skipped", "reason": "skipped by the benchmark: fp16 on CPU is an emulation"}
    rows.append(_entry("litert int8", top1=0.9, agreement=1.0, size_mb=1, timings={}, status="failed"))
    rows[-1]["reason"] = "export failed: the int8 model missed its accuracy gate"
    out = {x["label"]: x["why"] for x in recommend.excluded(rows, GATE, "cpu")}
    assert set(out) == {"onnx fp32", "coreml int8", "onnx fp16", "torchscript fp16", "litert int8"}
    assert out["coreml int8"] == "the accuracy gate refused it: agreement 97.00% is below 99%"
    assert out["onnx fp16"] == "the accuracy gate refused it: top-1 88.00% is more than 1% below fp32's 90.00%"
    assert out["torchscript fp16"] == "the validation against the checkpoint did not pass (the exporter's tolerances)"
    assert out["onnx fp32"] == "skipped by the benchmark: fp16 on CPU is an emulation"  # not the gate's doing
    assert out["litert int8"] == "export failed: the int8 model missed its accuracy gate"
    assert not any("status" in why for why in out.values())


def test_no_candidate_on_a_device_is_said():
    recs = recommend.recommend(_hand_made_rows(), "cuda", GATE)
    assert [r["goal"] for r in recs] == list(recommend.GOALS)
    assert all(
        r["label"] is None and "no artifact within the accuracy gate was timed on cuda" in r["why"] for r in recs
    )


def test_gate_thresholds_are_the_int8_exporters():
    from export.quantize import QuantizeOptions

    assert recommend.gate_thresholds() == {
        "max_agreement_loss": QuantizeOptions().max_agreement_loss,
        "max_accuracy_drop": QuantizeOptions().max_accuracy_drop,
    }


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """DIR/{train,val}/<class>/ with the cifar checkpoint's 5 classes, 2 random 40x40 PNGs each."""
    from builders import CLASSES

    root = tmp_path_factory.mktemp("report-data")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                    root / split / name / f"{i}.png"
                )
    return root


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["--formats", "onnx,tflite"],
            2,
            "--formats takes a comma-separated list of torchscript, onnx, openvino, coreml",
        ),
        (["--precisions", "fp64"], 2, "--precisions takes a list of"),
        (["--batch-sizes", "0"], 2, "batch sizes must be at least 1"),
        (["--devices", "tpu"], 2, "tpu"),
    ],
)
def test_bad_flags_are_usage_errors(cifar_checkpoint, tmp_path, args, code, message):
    result = CliRunner().invoke(main, [str(cifar_checkpoint), "-o", str(tmp_path / "r"), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (tmp_path / "r").exists()  # nothing written before the flags are checked


def test_missing_checkpoint_and_file_as_output(cifar_checkpoint, tmp_path):
    result = CliRunner().invoke(main, [str(tmp_path / "nope.pth"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "nope.pth is not a file" in result.output
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = CliRunner().invoke(main, [str(cifar_checkpoint), "-o", str(taken)])
    assert result.exit_code == 2 and "is a file" in result.output


def test_data_of_other_classes_fails_before_any_export(cifar_checkpoint, tmp_path):
    result = CliRunner().invoke(main, [str(cifar_checkpoint), "--data", "synthetic", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "trained on 5 classes but synthetic has 8" in result.output
    assert not (tmp_path / "r" / "artifacts").exists()


@pytest.mark.slow
def test_report_on_a_tiny_model(cifar_checkpoint, image_folder, tmp_path):
    import html5lib

    out = tmp_path / "report"
    # Core ML's rows (two conversions, ~15 s) are checked on the session's package below, not here.
    args = [str(cifar_checkpoint), "--data", str(image_folder), "--formats", "onnx", "--precisions", "fp32,int8"]
    args += ["--batch-sizes", "1,2", "--min-time", "0.05", "--repeats", "1", "--warmup", "1", "--quick", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    labels = ["checkpoint fp32", "onnx fp32", "onnx int8"]
    assert [a["label"] for a in doc["artifacts"]] == labels  # every row present, failures included
    rows = {a["label"]: a for a in doc["artifacts"]}
    assert rows["onnx fp32"]["status"] == "ok" and rows["onnx fp32"]["check_passed"]
    assert rows["onnx fp32"]["agreement"] == 1.0 and rows["onnx fp32"]["max_abs_diff"] < 1e-4
    assert rows["onnx fp32"]["top1"] == rows["checkpoint fp32"]["top1"]
    assert doc["data"] == {"source": str(image_folder), "split": "val", "images": 10}
    # this checkpoint names no training data: int8 cannot calibrate, and the row says so
    assert rows["onnx int8"]["status"] == "failed" and "no training data to calibrate on" in rows["onnx int8"]["reason"]
    assert [b["batch_size"] for b in rows["onnx fp32"]["devices"]["cpu"]["batches"]] == [1, 2]
    assert {r["goal"] for r in doc["recommendations"]} == set(recommend.GOALS)
    assert all(r["label"] in ("checkpoint fp32", "onnx fp32") for r in doc["recommendations"])
    assert doc["command"].startswith("alexnet-report ") and "--formats onnx " in doc["command"]

    markdown = (out / "report.md").read_text()
    assert all(f"| {label} |" in markdown for label in labels)
    page = html5lib.parse((out / "report.html").read_text(), namespaceHTMLElements=False)
    tables = [t for t in page.findall(".//table") if t.get("class") != "ship"]  # "Ship this" has its own
    assert [tr.find("td").text for t in tables for tr in t.findall("./tbody/tr")] == labels
    images = page.findall(".//img")
    assert len(images) == 3
    for img in images:
        kind, data = img.get("src").split(",", 1)
        assert kind == "data:image/png;base64"
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in (out / "report.html").read_text() and "https://" not in (out / "report.html").read_text()
    # nothing of the failed int8; onnx fp32 stays only if a goal recommends it (--prune-artifacts, the default)
    kept = ["model.onnx"] if any(r["label"] == "onnx fp32" for r in doc["recommendations"]) else []
    assert sorted(p.name for p in (out / "artifacts").iterdir()) == kept
    assert rows["onnx fp32"].get("removed", False) is not bool(kept) and doc["pruning"]["enabled"]
    assert markdown.startswith("# AlexNet deployment report\n\n## Ship this\n")


HOSTILE = "a`b|c*d_e[f](g)<i>&amp;"  # a checkpoint name that ends code spans, splits rows, marks up


def _hostile_document():
    failed = _entry("onnx fp32", top1=0.9, agreement=1.0, size_mb=1, timings={1: (1.0, 1000)}, status="failed")
    failed["reason"] = f"cannot read {HOSTILE}.pth: *boom*"
    model = {"checkpoint": f"{HOSTILE}.pth", "variant": "cifar", "num_classes": 5, "image_size": 32}
    model |= {"parameters": 1e6, "flops_per_image": 1e9, "weight_bytes": {"fp32": 4e6}}
    machine = {"date": "2026-01-01", "cpu": "CPU", "physical_cores": 2, "logical_cpus": 2, "os": "Linux"}
    machine |= {"python": "3.11", "threads": 2, "libraries": {}}
    return {
        "command": f"alexnet-report '{HOSTILE}.pth' -o out",
        "machine": machine,
        "model": model,
        "data": {"images": 3, "source": f"data/{HOSTILE}"},
        "gate": GATE,
        "devices": ["cpu"],
        "batch_sizes": [1],
        "artifacts": [_hand_made_rows()[0], failed],
        "recommendations": [{"device": "cpu", "goal": "smallest", "label": "checkpoint fp32", "why": f"{HOSTILE}"}],
        "excluded": [{"device": "cpu", "label": "onnx fp32", "why": f"export failed: {HOSTILE}"}],
        "warnings": [f"- {HOSTILE}"],
    }


def test_markdown_shows_names_from_outside_as_they_are():
    """Issue 26, item 7c: report.md escapes what file names and messages bring (report.html did)."""
    import html
    import re

    from benchmarks.report_pages import render_markdown

    text = render_markdown(_hostile_document())
    assert f"``{HOSTILE}.pth``" in text  # a longer fence around a name with a backtick
    for line in (line for line in text.splitlines() if line.startswith("| ")):
        assert len(re.split(r"(?<!\\)\|", line)) == 9 + 2  # nine cells: no pipe inside one splits it
    markdown_it = pytest.importorskip("markdown_it", reason="renders the Markdown as GitHub would")
    page = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert f"<code>{html.escape(HOSTILE, quote=False)}.pth</code>" in page  # the checkpoint, whole
    assert (
        f"<code class=\"language-bash\">alexnet-report '{html.escape(HOSTILE, quote=False)}.pth' \\\n    -o out\n</code>"
        in page
    )
    assert "<em>" not in page and "<a " not in page and "<i>" not in page and "<ul>\n<li>\n<ul>" not in page
    assert page.count("<strong>") == 2  # the recommendation's goal and "Warnings", nothing from the names
    assert page.count(f"{html.escape(HOSTILE, quote=False)}") >= 6  # every place it appears, literally
    assert all(row.count("<td") == 9 for row in page.split("<tr>") if "<td" in row)  # "Ship this" too


def test_formats_and_their_backends_come_from_the_format_table():
    from benchmarks import deploy_report, report_cli, runners
    from runtime import formats

    assert report_cli.FORMATS == formats.names(benchmarked=True)
    assert report_cli._choices("litert,executorch", report_cli.FORMATS, "--formats") == ["litert", "executorch"]
    for name in report_cli.FORMATS:  # every row is timed by the runner of its format's own backend
        assert deploy_report.FORMAT_BACKENDS[name] == formats.get(name).backend in runners.RUNNERS


@pytest.mark.slow  # four exports (two int8, calibrated and gated), evaluated, then timed in five workers
def test_edge_formats_have_fp32_and_int8_rows(cifar_checkpoint, image_folder, tmp_path, monkeypatch):
    """ExecuTorch and LiteRT rows: exported, checked against the checkpoint, evaluated and timed, each on the
    very file the report exported; LiteRT's (fixed batch 1) timed at batch 2 as alexnet-run runs it."""
    pytest.importorskip("executorch", reason="the executorch rows need ExecuTorch (the [executorch] extra)")
    pytest.importorskip("ai_edge_litert", reason="the litert rows run on ai-edge-litert (the [litert-runtime] extra)")
    pytest.importorskip("litert_torch", reason="the litert rows are exported by litert-torch (the [litert] extra)")
    from alexnet.checkpoint import load_checkpoint
    from benchmarks import deploy_report, suite
    from benchmarks.machine import Limits
    from benchmarks.timing import Budget
    from export import QuantizeOptions
    from export.cli_jobs import plan_jobs

    say = lambda _m: None  # noqa: E731
    jobs = plan_jobs(("executorch", "litert"), None, "fp32,int8")
    # this checkpoint names no training data: int8 calibrates on synthetic images, written whatever the gate says
    quantize = QuantizeOptions(calibration="synthetic", calibration_size=4, gate_size=8, force=True)
    entries = deploy_report.export_entries(cifar_checkpoint, jobs, tmp_path / "artifacts", say, quantize)
    checkpoint = load_checkpoint(cifar_checkpoint)
    dataset, _ = deploy_report.evaluation_data(checkpoint, str(image_folder), 10, say)
    deploy_report.evaluate_entries(entries, checkpoint, dataset, say)
    monkeypatch.setattr(suite, "measure_limits", lambda device, precisions, **_: Limits("cpu", {"fp32": 50.0}, 5.0, {}))
    settings = suite.Settings((), ["cpu"], [1, 2], Budget(iterations=1, rounds=1), warmup=1, threads=1)
    settings.remeasure = False
    parts = deploy_report.benchmark_entries(entries, cifar_checkpoint, settings, say)
    deploy_report.attach_timings(entries, parts["result"].rows, ["cpu"])

    rows = {e.label: e for e in entries}
    labels = ["executorch fp32", "executorch int8", "litert fp32", "litert int8"]
    assert [e.label for e in entries] == ["checkpoint fp32", *labels]
    for label in labels:
        entry = rows[label]
        assert entry.status == "ok" and entry.check_passed, f"{label}: {entry.reason}"
        assert entry.top1 is not None and entry.agreement is not None and entry.size_bytes > 0
        assert [b["batch_size"] for b in entry.devices["cpu"]["batches"]] == [1, 2]
    for fmt in ("executorch", "litert"):
        assert rows[f"{fmt} fp32"].agreement == 1.0 and rows[f"{fmt} fp32"].max_abs_diff < 1e-4
        assert rows[f"{fmt} int8"].size_bytes < rows[f"{fmt} fp32"].size_bytes / 2
    timed = {(r.backend, r.variant, r.batch_size): r for r in parts["result"].rows}
    for precision in ("fp32", "int8"):
        for n in (1, 2):  # the report's own file at every batch size, not one exported per batch
            assert timed[("litert", precision, n)].artifact == rows[f"litert {precision}"].path
        assert "run_as" not in timed[("litert", precision, 1)].info
        assert "2 engine calls of 1 image" in timed[("litert", precision, 2)].info["run_as"]
        cpu = rows[f"litert {precision}"].devices["cpu"]
        assert cpu["status"] == "ok" and cpu["reason"].startswith("batch 2: Predictor.predict_logits, as alexnet-run")
    assert rows["executorch fp32"].devices["cpu"]["reason"] is None  # batches up to 15: one call each
    assert sorted(p.suffix for p in (tmp_path / "artifacts").iterdir()) == [".pte", ".pte", ".tflite", ".tflite"]
