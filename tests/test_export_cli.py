"""alexnet-export: exit codes, one-line errors, no partial artifacts."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from export.cli import main
from tests.test_export_formats import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "model.pth")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.output and "--format all" in result.output


def test_torchscript_export_validates(ckpt, tmp_path):
    out = tmp_path / "m.pt"
    result = run("--format", "torchscript", ckpt, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "torchscript: PASS" in result.output and "top-1 agreement 100.0%" in result.output


def test_failed_validation_exits_1_and_keeps_artifact(ckpt, tmp_path):
    out = tmp_path / "half.pt"
    result = run("--format", "torchscript", ckpt, "-o", out, "--precision", "fp16", "--atol", "0")
    assert result.exit_code == 1
    assert "torchscript: FAIL" in result.output and "artifact kept" in result.output
    assert out.is_file()


def test_no_validate(ckpt, tmp_path):
    result = run("--format", "torchscript", ckpt, "-o", tmp_path / "m.pt", "--no-validate")
    assert result.exit_code == 0 and "PASS" not in result.output


@pytest.mark.parametrize("args,message", [
    (["--format", "tflite"], "Invalid value for '--format'"),
    (["--format", "onnx", "--batch", "2", "--dynamic-batch"], "exclude each other"),
    (["--format", "onnx", "--batch", "0"], "Invalid value for '--batch'"),
])
def test_usage_errors_exit_2(ckpt, args, message):
    result = run(*args, ckpt)
    assert result.exit_code == 2 and message in result.output


def assert_one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and text in lines[0]


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(run("--format", "onnx", tmp_path / "nope.pth"), "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run("--format", "torchscript", bad), "bad.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


@pytest.mark.parametrize("fmt,name", [("onnx", "m.onnx"), ("coreml", "m.mlpackage")])
def test_output_in_missing_directory(ckpt, tmp_path, fmt, name):
    assert_one_line_error(run("--format", fmt, ckpt, "-o", tmp_path / "missing" / name), "does not exist")
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_in_read_only_directory(ckpt, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_one_line_error(run("--format", "torchscript", ckpt, "-o", locked / "m.pt"), "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_image_size_too_small(ckpt, tmp_path):
    assert_one_line_error(run("--format", "torchscript", ckpt, "-o", tmp_path / "m.pt", "--image-size", "8"), "too small")
    assert list(tmp_path.iterdir()) == []
