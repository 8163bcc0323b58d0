"""alexnet-export: exit codes, one-line errors, no partial artifacts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from export.cli import main


@pytest.fixture(scope="module")
def ckpt(cifar_checkpoint):
    """The session's checkpoint (conftest.py), named model.pth; read-only: every export here goes to tmp_path."""
    return cifar_checkpoint


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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite"], "Invalid value for '--format'"),
        (["--format", "onnx", "--batch", "0"], "Invalid value for '--batch'"),
    ],
)
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


def test_output_in_unwritable_directory(ckpt, tmp_path, monkeypatch):
    """What a read-only directory does to a non-root user (root, running these tests, ignores modes)."""
    import export.common

    real_access = os.access
    monkeypatch.setattr(
        export.common.os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode)
    )
    assert_one_line_error(run("--format", "onnx", ckpt, "-o", tmp_path / "m.onnx"), "is not writable")
    assert list(tmp_path.iterdir()) == []


def test_image_size_too_small(ckpt, tmp_path):
    assert_one_line_error(
        run("--format", "torchscript", ckpt, "-o", tmp_path / "m.pt", "--image-size", "8"), "too small"
    )
    assert list(tmp_path.iterdir()) == []


def test_coreml_image_input_takes_no_batch(ckpt, tmp_path):
    result = run("--format", "coreml", ckpt, "-o", tmp_path / "m.mlpackage", "--batch", "4")
    assert result.exit_code == 2 and "--coreml-input tensor" in result.output
    assert list(tmp_path.iterdir()) == []


def test_coreml_needs_mlpackage_suffix(ckpt, tmp_path):
    assert_one_line_error(run("--format", "coreml", ckpt, "-o", tmp_path / "m.mlmodel"), ".mlpackage")
    assert list(tmp_path.iterdir()) == []


def test_all_needs_a_directory(ckpt, tmp_path):
    result = run("--format", "all", ckpt, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2 and "existing directory" in result.output


def test_failed_write_leaves_nothing(ckpt, tmp_path, monkeypatch):
    """A write that fails half-way (full disk, permissions) leaves neither artifact nor temp file."""
    import errno

    import torch

    def half_written(module, path, _extra_files=None):
        with open(path, "wb") as handle:
            handle.write(b"PK partial archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.jit, "save", half_written)
    assert_one_line_error(run("--format", "torchscript", ckpt, "-o", tmp_path / "m.pt"), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_failed_directory_write_leaves_nothing(tmp_path):
    """A .mlpackage is built beside the target; a failure half-way leaves nothing behind."""
    from export.common import ExportError, write_directory

    def half_built(tmp):
        os.makedirs(os.path.join(tmp, "Data"))
        raise PermissionError(13, "Permission denied")

    with pytest.raises(ExportError, match="cannot write .*m.mlpackage: Permission denied"):
        write_directory(tmp_path / "m.mlpackage", half_built)
    assert list(tmp_path.iterdir()) == []


def test_directory_write_replaces_an_old_package(tmp_path):
    from export.common import write_directory

    target = tmp_path / "m.mlpackage"
    for version in ("old", "new"):
        write_directory(target, lambda tmp: (os.makedirs(tmp), open(os.path.join(tmp, version), "w").close()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    assert [p.name for p in target.iterdir()] == ["new"]


def test_all_formats_with_table(ckpt, tmp_path):
    result = run("--format", "all", ckpt, "-o", tmp_path, "--no-validate")  # validation is tested per format
    assert result.exit_code == 0, result.output
    made = ["model.bin", "model.mlpackage", "model.onnx", "model.pt", "model.pte", "model.tflite", "model.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == made
    header = next(line for line in result.output.splitlines() if line.startswith("format"))
    assert header.split() == ["format", "precision", "size", "agreement", "accuracy", "check", "artifact"]
    rows = {
        line.split()[0]: line.split()
        for line in result.output.splitlines()
        if line.split()[:1] in (["torchscript"], ["onnx"], ["openvino"], ["coreml"], ["executorch"], ["litert"])
    }
    assert len(rows) == 6 and rows["openvino"][1] == rows["executorch"][1] == rows["litert"][1] == "fp32"
    assert rows["torchscript"][1] == "fp32" and rows["coreml"][1] == "fp16"  # Core ML defaults to fp16
    assert all(row[2:] == [row[2], "MB", "-", "-", "skipped", row[-1]] for row in rows.values())
    assert all(row[-1].startswith(str(tmp_path)) and float(row[2]) > 0 for row in rows.values())


def test_never_overwrites_the_checkpoint(ckpt, tmp_path):
    saved_as_pt = tmp_path / "best.pt"  # a checkpoint named like a TorchScript archive
    saved_as_pt.write_bytes(ckpt.read_bytes())
    assert_one_line_error(run("--format", "torchscript", saved_as_pt), "would overwrite the checkpoint")
    assert saved_as_pt.read_bytes() == ckpt.read_bytes()


def test_output_directory_gets_the_default_name(ckpt, tmp_path):
    result = run("--format", "torchscript", ckpt, "-o", tmp_path, "--no-validate")
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_data_folder_without_images_fails_before_any_artifact_is_written(ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    old = tmp_path / "m.pt"
    old.write_bytes(b"the previous artifact")
    assert_one_line_error(run("--format", "torchscript", ckpt, "-o", old, "--data", tmp_path / "empty"), "no images")
    assert old.read_bytes() == b"the previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "m.pt"]


def test_broken_data_image_fails_before_any_artifact_is_written(ckpt, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert_one_line_error(run("--format", "all", ckpt, "-o", tmp_path, "--data", tmp_path / "imgs"), "broken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_format_all_checks_every_output_before_writing(ckpt, tmp_path):
    (tmp_path / "model.onnx").mkdir()  # the second format's output is in the way
    assert_one_line_error(
        run("--format", "all", ckpt, "-o", tmp_path, "--no-validate"), "model.onnx: it is a directory"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_export_onto_a_device_writes_through_it(ckpt, tmp_path):
    import stat

    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    result = run("--format", "torchscript", ckpt, "-o", device, "--no-validate")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(device.stat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_not_enough_space_is_refused_before_writing(ckpt, tmp_path, monkeypatch):
    """torch.jit.save aborts the whole process on a full disk: the free space is checked first."""
    from types import SimpleNamespace

    from runtime import outputs

    old = tmp_path / "m.pt"
    old.write_bytes(b"the previous artifact")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: SimpleNamespace(free=100_000))
    assert_one_line_error(run("--format", "torchscript", ckpt, "-o", old), "not enough space on")
    assert old.read_bytes() == b"the previous artifact" and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_output_parent_is_a_file(ckpt, tmp_path):
    (tmp_path / "out").write_text("a file")
    assert_one_line_error(
        run("--format", "onnx", ckpt, "-o", tmp_path / "out" / "m.onnx"), "out is a file, not a directory"
    )


def test_directory_write_rolls_back_when_the_new_package_cannot_be_moved_in(tmp_path, monkeypatch):
    import errno

    from export.common import ExportError, write_directory
    from runtime import outputs

    target = tmp_path / "m.mlpackage"
    write_directory(target, lambda tmp: (os.makedirs(tmp), open(os.path.join(tmp, "old"), "w").close()))
    real_replace = os.replace

    def fail_moving_in(src, dst):
        if Path(src).parent != tmp_path and Path(src).name == "m.mlpackage":  # the new one, from its build folder
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", fail_moving_in)
    with pytest.raises(ExportError, match="Invalid cross-device link"):
        write_directory(target, lambda tmp: (os.makedirs(tmp), open(os.path.join(tmp, "new"), "w").close()))
    assert [p.name for p in target.iterdir()] == ["old"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.mlpackage"
    ]


@pytest.mark.slow  # every format in fp32 and int8 (~40 s): test-all
def test_format_all_fp32_int8_reads_the_checkpoint_once(ckpt, tmp_path, monkeypatch):
    """Every artifact of one run, its validation and the int8 gates come from one read (and one hash)
    of the checkpoint, however many formats and precisions the run lists."""
    import numpy as np
    import torch
    from PIL import Image

    from export import source

    for folder in ("calibration", "held-out"):
        (tmp_path / folder).mkdir()
        rng = np.random.default_rng(len(folder))
        for i in range(24):
            pixels = rng.integers(0, 256, (40, 47, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / folder / f"img{i:02d}.png")
    reads, hashes = [], []
    real_load, real_hash = torch.load, source.file_sha256
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(Path(f)) or real_load(f, *a, **k))
    monkeypatch.setattr(source, "file_sha256", lambda path: hashes.append(Path(path)) or real_hash(path))
    out = tmp_path / "out"
    out.mkdir()
    args = ("--calibration", tmp_path / "calibration", "--gate-data", tmp_path / "held-out", "--force")
    result = run("--format", "all", "--precisions", "fp32,int8", ckpt, "-o", out, *args)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "model-fp32.mlpackage",
        "model-int8.bin",
        "model-int8.mlpackage",
        "model-int8.onnx",
        "model-int8.pte",
        "model-int8.tflite",
        "model-int8.xml",
        "model.bin",
        "model.onnx",
        "model.pt",
        "model.pte",
        "model.tflite",
        "model.xml",
    ]
    assert [p for p in reads if p == Path(ckpt)] == [Path(ckpt)]
    assert hashes == [Path(ckpt)]
