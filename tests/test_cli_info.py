import json

from click.testing import CliRunner

from alexnet.checkpoint import Checkpoint, save_checkpoint
from alexnet.cli.info import main
from alexnet.model import build_alexnet
from runtime.preprocess import PreprocessSpec


def test_info_variant_table():
    result = CliRunner().invoke(main, ["--variant", "paper", "--num-classes", "10"])
    assert result.exit_code == 0, result.output
    assert "variant=paper classes=10 input=3x227x227" in result.output
    assert "LocalResponseNorm" in result.output
    assert "56,909,194" in result.output  # total parameters with 10 classes


def test_info_json():
    result = CliRunner().invoke(main, ["--variant", "cifar", "--num-classes", "10", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["total_parameters"] == 58_322_314 and data["image_size"] == 32


def test_info_from_checkpoint(tmp_path):
    model = build_alexnet(variant="cifar", num_classes=3)
    path = save_checkpoint(
        Checkpoint(model.config, model.state_dict(), ["a", "b", "c"], PreprocessSpec(resize=40, crop=40)),
        tmp_path / "m.pth",
    )
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 0, result.output
    assert "3 classes: a, b, c" in result.output and "input=3x40x40" in result.output


def test_info_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, [str(tmp_path / "nope.pth")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    too_small = runner.invoke(main, ["--image-size", "20"])
    assert too_small.exit_code == 2 and "at least 63x63" in too_small.output
    bad_variant = runner.invoke(main, ["--variant", "vgg"])
    assert bad_variant.exit_code == 2
    (tmp_path / "x.pth").write_bytes(b"")
    both = runner.invoke(main, [str(tmp_path / "x.pth"), "--variant", "paper"])
    assert both.exit_code == 2 and "brings its own" in both.output
