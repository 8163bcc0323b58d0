"""alexnet-eval on a checkpoint: metrics equal training's validation, files written, bad input."""

import csv
import json

import pytest
from builders import narrow_training
from click.testing import CliRunner
from PIL import Image

from alexnet.cli.eval import main as eval_cli
from alexnet.recipe import TrainArgs
from alexnet.train import train

ENV = {"ALEXNET_SYNTHETIC_VAL_PER_CLASS": "2"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    with narrow_training():
        history = train(
            TrainArgs(
                data="synthetic",
                variant="cifar",
                image_size=32,
                batch_size=8,
                epochs=1,
                out=str(out),
                synthetic_train_per_class=2,
                synthetic_val_per_class=2,
            ),
            echo=lambda s: None,
        )
    return out / "last.pth", history[-1]


def test_eval_matches_training_validation_and_writes_files(trained, tmp_path):
    checkpoint, last = trained
    result = CliRunner().invoke(
        eval_cli,
        [
            str(checkpoint),
            "--data",
            "synthetic",
            "--json",
            str(tmp_path / "e.json"),
            "--confusion",
            str(tmp_path / "cm.png"),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["samples"] == 16
    assert report["top1"] == pytest.approx(last["val_top1"]) and report["top5"] == pytest.approx(last["val_top5"])
    assert report["loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    assert len(report["per_class"]) == 8 and sum(r["support"] for r in report["per_class"]) == 16
    assert sum(map(sum, report["confusion_matrix"])) == 16
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.reader((tmp_path / "cm.csv").open()))
    assert rows[0][1:] == [r["class"] for r in report["per_class"]] and len(rows) == 9
    assert "top-1" in result.output and "rows: true class" in result.output


def test_eval_on_data_with_other_classes(trained, tmp_path):
    checkpoint, _ = trained
    for split in ("train", "val"):
        (tmp_path / split / "cats").mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / split / "cats" / "a.png")
    result = CliRunner().invoke(eval_cli, [str(checkpoint), "--data", str(tmp_path)])
    assert result.exit_code == 1 and "was trained on 8 classes" in result.output


def test_eval_bad_paths(tmp_path, trained):
    missing = CliRunner().invoke(eval_cli, [str(tmp_path / "nope.pth")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "junk.pth").write_bytes(b"junk")
    junk = CliRunner().invoke(eval_cli, [str(tmp_path / "junk.pth")])
    assert junk.exit_code == 1 and "junk.pth" in junk.output
    no_dir = CliRunner().invoke(eval_cli, [str(trained[0]), "--json", str(tmp_path / "no" / "x.json")], env=ENV)
    assert no_dir.exit_code == 2 and "does not exist" in no_dir.output


def test_eval_json_to_stdout_is_pure_json(trained):
    from pathlib import Path

    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--json", "-"], env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the human report went to stderr
    assert report["samples"] == 16 and "top-1" in result.stderr and not (Path.cwd() / "-").exists()


def test_eval_json_onto_a_device_keeps_the_device(trained, tmp_path):
    import os
    import stat

    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--json", str(device)], env=ENV)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(device.stat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["null"]


@pytest.mark.parametrize("flag", ["--json", "--confusion"])
def test_eval_unwritable_output_fails_before_evaluating(trained, tmp_path, monkeypatch, flag):
    import runtime

    monkeypatch.setattr(runtime, "load", lambda *a, **k: pytest.fail("the model was loaded before the output check"))
    (tmp_path / "report").write_text("a file")
    result = CliRunner().invoke(eval_cli, [str(trained[0]), flag, str(tmp_path / "report" / "out.json")], env=ENV)
    assert result.exit_code == 2, result.output
    assert f"cannot write {flag}" in result.output and "report is a file, not a directory" in result.output


def test_eval_failed_write_is_one_line_and_keeps_printed_results(trained, tmp_path, monkeypatch):
    import errno
    import os

    from runtime import outputs

    real_replace = os.replace

    def full(src, dst):  # only the report's rename: the run itself may save files
        if str(dst) == str(tmp_path / "e.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", full)
    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--json", str(tmp_path / "e.json")], env=ENV)
    assert result.exit_code == 1
    assert "top-1" in result.stdout and "rows: true class" in result.stdout  # printed before the write
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"Error: cannot write --json {tmp_path / 'e.json'}: No space left on device"
    )
    assert "Traceback" not in result.output and os.listdir(tmp_path) == []


def test_eval_maps_classes_listed_in_another_order(trained, tmp_path):
    from alexnet.synthetic import SYNTHETIC_CLASSES

    for name in SYNTHETIC_CLASSES:  # a folder lists its classes alphabetically, the model does not
        for split in ("train", "val"):
            (tmp_path / split / name).mkdir(parents=True)
        for i in range(2 if name == "circle" else 1):
            Image.new("RGB", (40, 40), (30 * i, 90, 160)).save(tmp_path / "val" / name / f"{i}.png")
    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--data", str(tmp_path), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert "in another order" in result.stderr and "mapped to the model's classes by name" in result.stderr
    support = {row["class"]: row["support"] for row in json.loads(result.stdout)["per_class"]}
    assert support == {name: 2 if name == "circle" else 1 for name in SYNTHETIC_CLASSES}


def test_eval_names_the_classes_that_differ(trained, tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "cats").mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / split / "cats" / "a.png")
    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert (
        "only in the model: circle, square, triangle, cross, ring and 3 more; only in the data: cats" in result.output
    )


def test_eval_image_size_applies_to_checkpoints(trained):
    result = CliRunner().invoke(eval_cli, [str(trained[0]), "--image-size", "40"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "input 40x40" in result.output and "samples 16" in result.output
    small = CliRunner().invoke(eval_cli, [str(trained[0]), "--image-size", "16"], env=ENV)
    assert small.exit_code == 2 and "too small" in small.output and "at least 27" in small.output
