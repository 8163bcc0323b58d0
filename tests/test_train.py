"""Training: outputs, resume bit for bit, SIGKILL + resume, DDP, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from alexnet.checkpoint import load_checkpoint
from alexnet.cli.train import main as train_cli
from alexnet.recipe import TrainArgs, resolve_recipe
from alexnet.train import train
from alexnet.trainloop import SYNC_EVERY, build_optimizer, epoch_seeds, learning_rate, train_one_epoch

# The smallest real run: the 32-px variant on 8 classes x 2 images.
TINY = ["--data", "synthetic", "--variant", "cifar", "--image-size", "32", "--batch-size", "8"]
TINY_ARGS = dict(
    data="synthetic",
    variant="cifar",
    image_size=32,
    batch_size=8,
    synthetic_train_per_class=2,
    synthetic_val_per_class=1,
)


def tiny_env():
    return {**os.environ, "ALEXNET_SYNTHETIC_TRAIN_PER_CLASS": "2", "ALEXNET_SYNTHETIC_VAL_PER_CLASS": "1"}


def run_cli(args, tmp_path):
    return CliRunner().invoke(train_cli, [*TINY, "--out", str(tmp_path), *args], env=tiny_env())


def test_run_writes_checkpoints_metrics_and_curves(narrow_training, tmp_path):
    result = run_cli(["--epochs", "2"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "val loss" in result.output
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "lr"} <= set(rows[0])
    ckpt = load_checkpoint(tmp_path / "last.pth")
    assert ckpt.training["epoch"] == 2 and ckpt.config.variant == "cifar" and len(ckpt.class_names) == 8
    # The on-disk "training" section: the same keys as every checkpoint so far (TrainState.to_dict)
    assert set(ckpt.training) == {"epoch", "best_top1", "history", "args", "optimizer", "scaler"}
    assert set(load_checkpoint(tmp_path / "best.pth").training) == {"epoch", "best_top1", "history", "args"}
    assert ckpt.preprocess.crop == 32
    assert (tmp_path / "best.pth").is_file() and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))


def test_two_epochs_equal_one_then_resume_bit_for_bit(narrow_training, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    torch_rng, numpy_rng = torch.get_rng_state(), np.random.get_state()
    train(TrainArgs(out=str(reference), epochs=2, **TINY_ARGS), echo=lambda s: None)
    # train() reseeds every epoch, then gives the caller its global generators' states back
    assert torch.equal(torch.get_rng_state(), torch_rng) and np.random.get_state()[1].tolist() == numpy_rng[1].tolist()
    # stop after epoch 1: interrupt the second epoch's training
    import alexnet.train as train_module

    calls = {"n": 0}
    original = train_module.train_one_epoch

    def stop_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", stop_in_second_epoch)
    interrupted = tmp_path / "int"
    with pytest.raises(KeyboardInterrupt):
        train(TrainArgs(out=str(interrupted), epochs=2, **TINY_ARGS), echo=lambda s: None)
    assert load_checkpoint(interrupted / "last.pth").training["epoch"] == 1
    monkeypatch.setattr(train_module, "train_one_epoch", original)
    history = train(
        TrainArgs(out=str(interrupted), epochs=2, **TINY_ARGS),
        resume=str(interrupted / "last.pth"),
        echo=lambda s: None,
    )
    assert [r["epoch"] for r in history] == [1, 2]
    a, b = load_checkpoint(reference / "last.pth"), load_checkpoint(interrupted / "last.pth")
    for key in a.model_state:
        assert torch.equal(a.model_state[key], b.model_state[key]), key
    assert a.training["history"][1]["val_loss"] == b.training["history"][1]["val_loss"]


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    # Killed as soon as the first checkpoint exists: mid-run, wherever that lands (a save included).
    command = [sys.executable, "-m", "alexnet.cli.train", *TINY, "--epochs", "4", "--out", str(tmp_path)]
    process = subprocess.Popen(command, env=tiny_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not (tmp_path / "last.pth").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = load_checkpoint(tmp_path / "last.pth").training["epoch"]
    assert 1 <= done < 4
    resumed = subprocess.run(
        [*command, "--resume", str(tmp_path / "last.pth")], env=tiny_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "last.pth").training["epoch"] == 4
    assert not list(tmp_path.glob(".last.pth.*.tmp"))  # a killed write's temp file is removed by the next one


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path, free_port):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port}",
        "-m",
        "alexnet.cli.train",
        *TINY,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, env=tiny_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("epoch 1/1") == 1  # rank 0 alone prints
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "lr"} <= set(row)
    assert load_checkpoint(tmp_path / "last.pth").build_model() is not None


def test_schedule_warmup_then_cosine():
    args = TrainArgs(epochs=2, lr=1.0, warmup_epochs=1.0, schedule="cosine")
    assert learning_rate(0, 10, args) == pytest.approx(0.1) and learning_rate(9, 10, args) == pytest.approx(1.0)
    assert learning_rate(10, 10, args) == pytest.approx(1.0) and learning_rate(15, 10, args) == pytest.approx(0.5)
    step = TrainArgs(epochs=3, lr=1.0, warmup_epochs=0.0, schedule="step", step_size=1, gamma=0.1)
    assert learning_rate(25, 10, step) == pytest.approx(0.01)


def test_bad_inputs(tmp_path):
    unknown = CliRunner().invoke(train_cli, ["--variant", "vgg", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "vgg" in unknown.output
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    empty = CliRunner().invoke(train_cli, ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert empty.exit_code == 1 and "no images found" in empty.output
    for split, name in (("train", "a"), ("val", "b")):
        (tmp_path / "odd" / split / name).mkdir(parents=True)
        from PIL import Image

        Image.new("RGB", (70, 70)).save(tmp_path / "odd" / split / name / "x.png")
    odd = CliRunner().invoke(train_cli, ["--data", str(tmp_path / "odd"), "--out", str(tmp_path / "o")])
    assert odd.exit_code == 1 and "train and val classes differ" in odd.output
    amp = CliRunner().invoke(train_cli, ["--amp", "bf16", "--device", "cpu", "--out", str(tmp_path / "o")])
    assert amp.exit_code == 2


def test_resume_from_another_variant_or_class_count(narrow_training, tmp_path):
    assert run_cli(["--epochs", "1"], tmp_path / "run").exit_code == 0
    other = CliRunner().invoke(
        train_cli,
        [
            "--data",
            "synthetic",
            "--variant",
            "torchvision",
            "--image-size",
            "64",
            "--out",
            str(tmp_path / "x"),
            "--resume",
            str(tmp_path / "run" / "last.pth"),
        ],
        env=tiny_env(),
    )
    assert other.exit_code == 1 and "differs from the resumed run's" in other.output
    assert "is variant 'cifar' with 8 classes" in other.output
    missing = run_cli(["--resume", str(tmp_path / "nope.pth")], tmp_path / "y")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_full_disk_while_saving_keeps_last_checkpoint(narrow_training, tmp_path, monkeypatch):
    assert run_cli(["--epochs", "1"], tmp_path).exit_code == 0
    before = (tmp_path / "last.pth").read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    result = run_cli(["--epochs", "2", "--resume", str(tmp_path / "last.pth")], tmp_path)
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert (tmp_path / "last.pth").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_defaults_learn_the_synthetic_task(demo_run):
    """The README's claim: no flags beyond data/size/epochs/batch, 4 epochs. Measured val top-1 at
    seeds 0 / 1 / 2: 0.915 / 0.8925 / 0.905 on an AVX2 machine, 0.855 / 0.9025 / 0.9375 on an
    AMX (AVX-512) one: the kernels' rounding differs per instruction set and 4 epochs amplify it.
    The bound sits 5.5 points under the worst of them (this run uses seed 0; chance is 0.1)."""
    _, history = demo_run
    assert max(row["val_top1"] for row in history) >= 0.80, history


def test_help_shows_the_recipes_own_values():
    from alexnet.recipe import RECIPES

    text = CliRunner().invoke(train_cli, ["--help"], terminal_width=1000).output
    for name, values in RECIPES.items():
        assert f"{name}: {values['optimizer']} lr {values['lr']:g}" in " ".join(text.split())
    assert f"[default: {TrainArgs().epochs}" in text


def test_epoch_seeds_differ_for_every_seed_epoch_and_rank():
    """The old affine mix seed * 1_000_003 + epoch * 1_009 + rank gave (epoch 1, rank 0) the seeds of
    (epoch 0, rank 1009); hashed with SeedSequence, no two (seed, epoch, rank) share one."""
    triples = [(seed, epoch, rank) for seed in (0, 1) for epoch in (0, 1, 2) for rank in range(0, 2048, 7)]
    triples = sorted({*triples, (0, 0, 1009), (0, 0, 1_000_003)})  # (0, 1, 0) and (1, 0, 0) are in the grid
    seeds = [epoch_seeds(*triple) for triple in triples]
    for part in range(3):
        assert len({s[part] for s in seeds}) == len(triples)
    assert epoch_seeds(3, 2, 1) == epoch_seeds(3, 2, 1)  # a function of the triple: resume reproduces it
    assert all(0 <= s[0] < 2**64 and 0 <= s[1] < 2**64 and 0 <= s[2] < 2**32 for s in seeds)


def test_finite_epoch_totals_match_the_per_step_sum():
    batches = [(torch.randn(3, 3), torch.tensor([0, 1, 1])) for _ in range(SYNC_EVERY + 2)]
    model = torch.nn.Linear(3, 2)
    args = resolve_recipe(TrainArgs(epochs=1, lr=1e-9, warmup_epochs=0.0))
    optimizer = build_optimizer(model, args)
    with torch.no_grad():
        expected = sum(
            torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1).item() * 3 for x, y in batches
        )
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    result = train_one_epoch(model, batches, optimizer, scaler, args, torch.device("cpu"), 0, 0, None)
    assert result["totals"][2] == 3 * len(batches) and 0 <= result["totals"][1] <= 3 * len(batches)
    assert result["totals"][0].item() == pytest.approx(expected, rel=1e-4)
