"""alexnet-eval on a checkpoint: metrics equal training's validation, files written, bad input."""

import csv
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from alexnet.cli.eval import main as eval_cli
from alexnet.train import train
from alexnet.trainloop import TrainArgs

ENV = {"ALEXNET_SYNTHETIC_VAL_PER_CLASS": "2"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    history = train(TrainArgs(data="synthetic", variant="cifar", image_size=32, batch_size=8, epochs=1, out=str(out),
                              synthetic_train_per_class=2, synthetic_val_per_class=2), echo=lambda s: None)
    return out / "last.pth", history[-1]


def test_eval_matches_training_validation_and_writes_files(trained, tmp_path):
    checkpoint, last = trained
    result = CliRunner().invoke(eval_cli, [str(checkpoint), "--data", "synthetic", "--json", str(tmp_path / "e.json"),
                                           "--confusion", str(tmp_path / "cm.png")], env=ENV)
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
