"""alexnet-report's Core ML rows off macOS: top-1 and agreement from the Core ML reference evaluator, the
latency never a number that pretends to be Core ML's; and no coremltools progress bar on stderr."""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from benchmarks import recommend
from benchmarks.suite import Row

pytest.importorskip("coremltools")
GATE = {"max_agreement_loss": 0.01, "max_accuracy_drop": 0.01}
BARS = ("Running MIL", "Converting PyTorch Frontend", "it/s]", "passes/s")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """DIR/val/<class>/ with the cifar checkpoint's 5 classes, one random 32x32 PNG each."""
    from builders import CLASSES

    root = tmp_path_factory.mktemp("coreml-report-data")
    rng = np.random.default_rng(1)
    for name in CLASSES:
        for split in ("train", "val"):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / name / "0.png")
    return root


@pytest.fixture(scope="module")
def coreml_entries(cifar_checkpoint, tmp_path_factory):
    """The report's own export of the checkpoint to Core ML fp16 (tensor input), stderr captured by the test."""
    from benchmarks import deploy_report

    out = tmp_path_factory.mktemp("coreml-report") / "artifacts"
    return deploy_report.export_entries(cifar_checkpoint, [("coreml", "fp16", None)], out, lambda _m: None)


def test_core_ml_conversion_prints_no_progress_bar(cifar_checkpoint, tmp_path, capfd, monkeypatch):
    """Issue item 7: coremltools' tqdm bars ("Running MIL ... pipeline") do not flood the report's stderr; the
    same conversion with the bars let through prints them (the test can fail)."""
    from benchmarks import deploy_report
    from export import coreml_bars, to_coreml

    say = lambda _m: None  # noqa: E731
    deploy_report.export_entries(cifar_checkpoint, [("coreml", "int8", None)], tmp_path / "quiet", say)
    err = capfd.readouterr().err
    assert not [bar for bar in BARS if bar in err], err[-2000:]
    monkeypatch.setattr(to_coreml, "quiet_progress_bars", contextlib.nullcontext)
    deploy_report.export_entries(cifar_checkpoint, [("coreml", "fp16", None)], tmp_path / "loud", say)
    assert "Running MIL" in capfd.readouterr().err
    assert not coreml_bars._saved and coreml_bars._depth == 0


def test_quiet_bars_nest_and_restore_across_threads():
    import coremltools  # noqa: F401 (its modules are what the block rebinds)
    from coremltools.converters.mil.mil.passes import pass_pipeline
    from tqdm import tqdm

    from export.coreml_bars import quiet_progress_bars

    entered, release = threading.Barrier(3), threading.Event()

    def convert() -> None:
        with quiet_progress_bars():
            entered.wait()
            release.wait(10)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait()
    assert pass_pipeline.tqdm is not tqdm and pass_pipeline.tqdm(range(3)).disable
    with quiet_progress_bars():  # nested in the threads' blocks
        pass
    assert pass_pipeline.tqdm is not tqdm  # the threads' blocks still hold it
    release.set()
    for thread in threads:
        thread.join()
    assert pass_pipeline.tqdm is tqdm  # restored when the last block ended


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML predicts on macOS: no stand-in there")
def test_core_ml_off_macos_is_evaluated_by_the_reference_evaluator(cifar_checkpoint, coreml_entries, image_folder):
    """Issue item 2: the row shows the reference evaluator's top-1 and agreement, says so, and its latency
    cells are marked as not Core ML's; the benchmark's skip is its own plain sentence, not the gate's."""
    from alexnet.checkpoint import load_checkpoint
    from benchmarks import deploy_report
    from benchmarks.report_pages import details, table_rows

    checkpoint = load_checkpoint(cifar_checkpoint)
    dataset, _ = deploy_report.evaluation_data(checkpoint, str(image_folder), 5, lambda _m: None)
    entries = [deploy_report.Entry("checkpoint", "fp32", str(cifar_checkpoint)), coreml_entries[1]]
    deploy_report.evaluate_entries(entries, checkpoint, dataset, lambda _m: None)
    coreml = entries[1]
    assert coreml.status == "ok" and coreml.stand_in == "coreml-reference" and coreml.check_passed, coreml.check
    assert coreml.top1 is not None and coreml.agreement is not None and coreml.max_abs_diff < 1e-2
    assert coreml.note.startswith("Core ML prediction needs macOS; this is ") and "reference evaluator" in coreml.note
    assert "spec, input/outputs, labels, metadata and weights checked" in coreml.check
    # the benchmark's own row off macOS: a skip with its reason, at no batch size
    skipped = Row("coreml", "fp16", "cpu", None, status="skipped", reason="Core ML predicts only on macOS")
    deploy_report.attach_timings(entries, [skipped], ["cpu"])
    assert coreml.devices["cpu"]["reason"] == "skipped by the benchmark: Core ML predicts only on macOS"

    artifacts = [e.to_dict() for e in entries]
    doc = {"artifacts": artifacts, "batch_sizes": [1, 8], "devices": ["cpu"]}
    row = table_rows(doc, "cpu")[1][1]
    assert row[2] == f"{coreml.top1:.2%}" and row[3] == f"{coreml.agreement:.2%}"
    assert row[5] == "— (reference evaluator, not Core ML)" and row[6] == row[7] == "—"
    assert row[8].startswith("Core ML prediction needs macOS") and "skipped" not in row[8]
    assert any(line.startswith("coreml fp16: Core ML prediction needs macOS") for line in details(doc, "cpu"))
    out = {x["label"]: x["why"] for x in recommend.excluded(artifacts, GATE, "cpu")}
    assert out["coreml fp16"] == "skipped by the benchmark: Core ML predicts only on macOS"  # not "the gate"
    assert all(r["label"] != "coreml fp16" for r in recommend.recommend(artifacts, "cpu", GATE))
