"""alexnet-report --prune-artifacts (the default) / --keep-all-artifacts: after the report, the artifacts no goal
recommends are deleted, safely, and the report and report.json say which (issue item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_docs import document

from benchmarks import report_cli, report_prune


def _files(out: Path, checkpoint: Path) -> dict:
    """The document's artifacts written under out/artifacts: every format's shape (a file, a folder, a pair)."""
    artifacts = out / "artifacts"
    (artifacts / "model-fp16.mlpackage" / "Data").mkdir(parents=True)
    (artifacts / "model-fp16.mlpackage" / "Data" / "weight.bin").write_bytes(b"w" * 10)
    for name in ("model-fp16.pt", "model.onnx", "model-int8.onnx"):
        (artifacts / name).write_bytes(b"x" * 10)
    checkpoint.write_bytes(b"c")
    return document(artifacts, checkpoint)


def test_prune_deletes_only_what_no_goal_recommends(tmp_path):
    out = tmp_path / "report"
    doc = _files(out, out / "best.pth")  # the checkpoint inside -o: never deleted
    report_prune.mark(doc, True)
    assert doc["pruning"]["removed"] == ["torchscript fp16", "onnx fp32", "coreml fp16"]
    assert report_prune.remove(doc, out / "artifacts", out) == []
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == ["artifacts/model-int8.onnx", "best.pth"]
    assert [e["label"] for e in doc["artifacts"] if e.get("removed")] == doc["pruning"]["removed"]


def test_prune_never_follows_a_link_or_leaves_the_folder(tmp_path):
    out, outside = tmp_path / "report", tmp_path / "elsewhere"
    doc = _files(out, tmp_path / "best.pth")
    outside.mkdir()
    (outside / "precious.onnx").write_bytes(b"keep me")
    (out / "artifacts" / "model.onnx").unlink()
    (out / "artifacts" / "model.onnx").symlink_to(outside / "precious.onnx")  # onnx fp32: a link out
    doc["artifacts"][1]["path"] = str(outside / "model-fp16.pt")  # torchscript fp16: a file outside -o
    (outside / "model-fp16.pt").write_bytes(b"keep me too")
    report_prune.mark(doc, True)
    problems = report_prune.remove(doc, out / "artifacts", out)
    assert len(problems) == 2 and all("not removed" in p for p in problems)
    assert (outside / "precious.onnx").read_bytes() == b"keep me" and (outside / "model-fp16.pt").exists()
    assert (out / "artifacts" / "model.onnx").is_symlink()  # the link itself stays too: the run did not make it
    assert doc["pruning"]["removed"] == ["coreml fp16"]
    rows = {e["label"]: e for e in doc["artifacts"]}
    assert rows["onnx fp32"]["removed"] is False and "symbolic link" in rows["onnx fp32"]["remove_error"]


def test_nothing_recommended_nothing_pruned(tmp_path):
    doc = _files(tmp_path / "report", tmp_path / "best.pth")
    for rec in doc["recommendations"]:
        rec["label"] = None
    report_prune.mark(doc, True)
    assert doc["pruning"]["removed"] == [] and not any(e.get("removed") for e in doc["artifacts"])


@pytest.mark.parametrize("keep", [False, True])
def test_the_command_prunes_after_writing_and_says_so(cifar_checkpoint, tmp_path, monkeypatch, keep):
    out = tmp_path / "report"
    monkeypatch.setattr(report_cli, "_build", lambda checkpoint, jobs, out_dir, *_: _files(out_dir, tmp_path / "c.pth"))
    args = [str(cifar_checkpoint), "--formats", "onnx", "-o", str(out), "--quiet"]
    result = CliRunner().invoke(report_cli.main, args + (["--keep-all-artifacts"] if keep else []))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["artifacts"]) == 5  # every row still described
    removed = [e["label"] for e in doc["artifacts"] if e.get("removed")]
    markdown = (out / "report.md").read_text()
    names = sorted(p.name for p in (out / "artifacts").iterdir())
    if keep:
        assert removed == [] and doc["pruning"] == {
            "enabled": False,
            "keep_flag": "--keep-all-artifacts",
            "removed": [],
        }
        assert len(names) == 4 and "Removed after this report" not in markdown
        assert doc["command"].endswith(f"--keep-all-artifacts -o {out}")
    else:
        assert removed == doc["pruning"]["removed"] == ["torchscript fp16", "onnx fp32", "coreml fp16"]
        assert names == ["model-int8.onnx"]
        assert "Removed after this report, because no goal recommends them (456.4 MB in all)" in markdown
        assert "rerun with --keep-all-artifacts to keep every artifact" in markdown
        assert "its file was removed after the report" in markdown
        assert "--keep-all-artifacts" not in doc["command"]
        assert "removed 3 artifacts no goal recommends" in result.output
