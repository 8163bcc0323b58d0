import json

import pytest
import torch
from builders import checkpoint_dict
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


# --- issue 26, item 5: a checkpoint's model_config is untrusted ------------------------------------


@pytest.mark.parametrize(
    "model_config, message",
    [
        ({"num_classes": 1e9}, "model_config.num_classes must be an integer from 1 to 100,000, got 1000000000.0"),
        ({"num_classes": 10**9}, "model_config.num_classes must be an integer from 1 to 100,000, got 1000000000"),
        ({"num_classes": -1}, "model_config.num_classes must be an integer from 1 to 100,000, got -1"),
        ({"num_classes": True}, "model_config.num_classes must be an integer from 1 to 100,000, got True"),
        ({"num_classes": "10"}, "model_config.num_classes must be an integer from 1 to 100,000, got '10'"),
        ({"variant": "evil"}, "model_config.variant must be one of torchvision, paper, cifar, got 'evil'"),
        ({"dropout": 2.0}, "model_config.dropout must be a number in [0, 1), got 2.0"),
        ({"dropout": float("nan")}, "model_config.dropout must be a number in [0, 1), got nan"),
        ({"width_divisor": 3}, "model_config.width_divisor must be one of (1, 2, 4, 8, 16), got 3"),
        ({"depth": 12}, "unknown model_config keys: 'depth'"),
        # In bounds, but 100,000 outputs for 4 names: refused before a 1.6 GB last layer is built.
        ({"num_classes": 100_000}, "model_config.num_classes is 100,000 but class_names has 4"),
    ],
)
def test_info_refuses_a_hostile_model_config_in_one_line_before_building_a_model(
    tmp_path, monkeypatch, model_config, message
):
    from alexnet.model import AlexNet

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from the hostile config")

    monkeypatch.setattr(AlexNet, "__init__", no_model)
    path = tmp_path / "c.pth"
    torch.save(checkpoint_dict(model_config={"variant": "cifar", "num_classes": 4} | model_config), path)
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.splitlines() == [f"Error: {path} is a malformed alexnet-deploy checkpoint: {message}"]
