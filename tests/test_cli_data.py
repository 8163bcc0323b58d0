"""alexnet-data: exit codes and messages (CliRunner)."""

import pickle

import numpy as np
from click.testing import CliRunner

from alexnet.cli.data import main as data_cli

SMALL_ENV = {"ALEXNET_SYNTHETIC_TRAIN_PER_CLASS": "3", "ALEXNET_SYNTHETIC_VAL_PER_CLASS": "2"}


def run(*args, env=None):
    return CliRunner().invoke(data_cli, [str(a) for a in args], env=env)


def test_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0 and "alexnet-data synthetic --out" in result.output
    for command in ("synthetic", "inspect"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_synthetic_writes_and_inspect_reads_it_back(tmp_path):
    out = tmp_path / "shapes"
    result = run("synthetic", "--out", out, "--per-class", 2, "--val-per-class", 1, "--image-size", 32, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "wrote 16 train and 8 val images of 8 classes (32x32)" in result.output
    assert len(list(out.rglob("*.png"))) == 24
    again = run("synthetic", "--out", out, "--per-class", 1)
    assert again.exit_code == 2 and "already holds a data set" in again.output
    result = run("inspect", out)
    assert result.exit_code == 0, result.output
    assert f"source: imagefolder:{out}" in result.output
    assert "train: 16 images (2-2 per class)" in result.output and "val: 8 images (1-1 per class)" in result.output
    assert "resize 256, crop 224" in result.output  # folders default to 224 px (the torchvision variant's)
    assert "train augmentation (default): standard (a random resized crop" in result.output
    assert f"notice: the images in {out} are about 32x32 pixels" in result.output  # 7x smaller than 224
    cifar = run("inspect", out, "--variant", "cifar")
    assert cifar.exit_code == 0 and "resize 32, crop 32" in cifar.output and "notice" not in cifar.output
    assert "train augmentation (default): light (a random crop of the image padded" in cifar.output


def test_inspect_synthetic(tmp_path):
    result = run("inspect", "synthetic", "--image-size", 40, env=SMALL_ENV)
    assert result.exit_code == 0, result.output
    assert "source: synthetic" in result.output and "classes (8): circle, square" in result.output
    assert "train: 24 images (3-3 per class)" in result.output and "val: 16 images (2-2 per class)" in result.output
    assert "resize 40, crop 40" in result.output


def test_inspect_cifar10(tmp_path):
    root = tmp_path / "cifar"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as handle:
            pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": list(range(10))}, handle)
    with open(root / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    result = run("inspect", f"cifar10:{root}")
    assert result.exit_code == 0, result.output
    assert "train: 50 images (5-5 per class)" in result.output and "resize 32, crop 32" in result.output
    assert "mean (0.4914, 0.4822, 0.4465)" in result.output


def test_library_errors_are_one_line_exit_1(tmp_path):
    result = run("inspect", f"cifar10:{tmp_path}")
    assert result.exit_code == 1
    assert "Error:" in result.output and "missing data_batch_1" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run("inspect", tmp_path / "nowhere")
    assert result.exit_code == 1 and "does not exist" in result.output
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    result = run("inspect", tmp_path / "empty")
    assert result.exit_code == 1 and "no images found" in result.output


def test_bad_flags_exit_2(tmp_path):
    assert run("synthetic", "--out", tmp_path).exit_code == 2  # --per-class is required
    assert run("synthetic", "--out", tmp_path, "--per-class", 0).exit_code == 2
    assert run("synthetic", "--out", tmp_path, "--per-class", 1, "--image-size", 4).exit_code == 2
    assert run("inspect", "synthetic", "--val-fraction", 1.5).exit_code == 2
    assert run("frobnicate").exit_code == 2
    (tmp_path / "file").write_text("x")
    result = run("synthetic", "--out", tmp_path / "file", "--per-class", 1)
    assert result.exit_code == 2 and "is a file" in result.output


def test_unwritable_out_exits_1(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("synthetic", "--out", tmp_path / "file" / "sub", "--per-class", 1)
    assert result.exit_code == 1 and "cannot write to" in result.output and "Traceback" not in result.output
