"""A newcomer's training run: the input size follows the variant, the augmentation can be chosen and
is recorded (alexnet-info shows it), small images get a notice, and a run killed before its first
save leaves no folder behind."""

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from alexnet.checkpoint import load_checkpoint
from alexnet.cli.info import main as info_cli
from alexnet.cli.train import main as train_cli
from alexnet.synthetic import write_synthetic_imagefolder


@pytest.fixture(scope="module")
def folder_of_32px(tmp_path_factory):
    """8 classes x 2 train / 1 val images of 32x32 pixels: digits-sized."""
    path = tmp_path_factory.mktemp("small") / "digits"
    write_synthetic_imagefolder(path, per_class=2, image_size=32, seed=0, val_per_class=1)
    return path


def train(folder, out, *flags):
    args = ["--data", str(folder), "--epochs", "1", "--batch-size", "8", "--out", str(out), *flags]
    return CliRunner().invoke(train_cli, args)


def test_cifar_variant_on_a_folder_trains_at_32_pixels(narrow_training, folder_of_32px, tmp_path):
    result = train(folder_of_32px, tmp_path / "run", "--variant", "cifar")  # no --image-size
    assert result.exit_code == 0, result.output
    assert "16 train / 8 val images, 32x32 input, augment light (a random crop" in result.output
    assert "notice" not in result.output  # the input fits the images
    ckpt = load_checkpoint(tmp_path / "run" / "best.pth")
    assert (ckpt.preprocess.resize, ckpt.preprocess.crop) == (32, 32)  # small images: no border cut
    stored = ckpt.training["args"]
    assert (stored["image_size"], stored["augment"], stored["flip"]) == (32, "light", True)


def test_the_chosen_augmentation_is_recorded_and_shown(narrow_training, folder_of_32px, tmp_path):
    result = train(folder_of_32px, tmp_path / "run", "--variant", "cifar", "--augment", "none", "--no-flip")
    assert result.exit_code == 0, result.output
    assert "augment none (no crop: the eval resize and centre crop), no flip" in result.output
    args = load_checkpoint(tmp_path / "run" / "last.pth").training["args"]
    assert (args["augment"], args["flip"]) == ("none", False)
    info = CliRunner().invoke(info_cli, [str(tmp_path / "run" / "best.pth")])
    assert info.exit_code == 0, info.output
    assert (
        f"trained: {folder_of_32px}, 32x32, augment none (no crop: the eval resize and centre crop), no flip, "
        in info.output
    )
    as_json = CliRunner().invoke(info_cli, [str(tmp_path / "run" / "best.pth"), "--json"])
    assert '"augment": "none"' in as_json.output and '"flip": false' in as_json.output


def test_a_much_larger_input_gets_a_notice(narrow_training, folder_of_32px, tmp_path):
    result = train(folder_of_32px, tmp_path / "run", "--variant", "cifar", "--image-size", "64")
    assert result.exit_code == 0, result.output
    assert "notice: the images in" in result.output and "much smaller than the 64x64 input in use" in result.output


def test_bad_augment_and_out_under_a_file_are_refused(folder_of_32px, tmp_path):
    bad = train(folder_of_32px, tmp_path / "run", "--augment", "mixup")
    assert bad.exit_code == 2 and "'mixup' is not one of 'none', 'light', 'standard', 'paper'" in bad.output
    (tmp_path / "file").write_text("x")
    under_file = train(folder_of_32px, tmp_path / "file" / "run", "--variant", "cifar")
    assert under_file.exit_code == 1
    assert f"cannot create {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is not a folder" in under_file.output


@pytest.mark.slow
def test_a_run_killed_before_its_first_save_leaves_no_folder(tmp_path):
    out = tmp_path / "new" / "run"
    env = {**os.environ, "ALEXNET_SYNTHETIC_TRAIN_PER_CLASS": "1000", "ALEXNET_SYNTHETIC_VAL_PER_CLASS": "1"}
    command = [sys.executable, "-m", "alexnet.cli.train", "--image-size", "64", "--epochs", "1", "--out", str(out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = process.stdout.readline()  # printed once the data and model are built, before the first step
        assert first.startswith("training torchvision on synthetic: 8000 train"), first
        process.send_signal(signal.SIGKILL)  # 125 steps of batch 64 to go: minutes before the first save
    finally:
        process.kill()
        process.wait()
    assert not (tmp_path / "new").exists()
