"""Training faults: divergence stops the run (one line, nothing non-finite saved), bad hyper-parameters
are refused before any data is built, and a failed run removes the empty --out folders it made."""

import json
import math

import pytest
import torch
from builders import SMALL
from click.testing import CliRunner

import alexnet.train as train_module
import alexnet.trainloop as trainloop
from alexnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from alexnet.cli.train import main as train_cli
from alexnet.data import SYNTHETIC_CLASSES, default_preprocess
from alexnet.model import AlexNet, AlexNetConfig
from alexnet.recipe import TrainArgs, resolve_recipe
from alexnet.train import DivergenceError, TrainError, train

pytestmark = pytest.mark.usefixtures("narrow_training")  # every run here: the tests' small model

# As tests/test_train.py: the 32-px variant on 8 classes x 2 images (2 steps per epoch), fixed seed.
TINY = [
    "--data",
    "synthetic",
    "--variant",
    "cifar",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--seed",
    "0",
    "--synthetic-train-per-class",
    "2",
    "--synthetic-val-per-class",
    "1",
]


def run_cli(out, *args):
    return CliRunner().invoke(train_cli, [*TINY, "--out", str(out), *args])


def strict_rows(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not strict JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def finite(state):
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_huge_lr_diverges_with_one_line_error_and_saves_nothing(tmp_path):
    out = tmp_path / "run"
    result = run_cli(out, "--epochs", "1", "--lr", "1e6")
    assert result.exit_code == 1, result.output
    assert "training diverged: loss is nan at epoch 1, step 2 (lr 1e+06)" in result.output
    assert "lower --lr (the default recipe's is 0.0004)" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not (out / "best.pth").exists() and not (out / "last.pth").exists()
    if (out / "metrics.jsonl").exists():
        strict_rows(out / "metrics.jsonl")
    assert not out.exists()  # the run made it and wrote nothing into it


def test_divergence_in_second_epoch_keeps_first_epochs_checkpoints(tmp_path, monkeypatch):
    schedule = trainloop.learning_rate

    def blow_up_in_epoch_2(step, steps_per_epoch, args):
        return 1e6 if step >= steps_per_epoch else schedule(step, steps_per_epoch, args)

    monkeypatch.setattr(trainloop, "learning_rate", blow_up_in_epoch_2)
    result = run_cli(tmp_path, "--epochs", "2")
    assert result.exit_code == 1, result.output
    assert "epoch 1/2" in result.output and "training diverged: loss is nan at epoch 2, step 2" in result.output
    last, best = load_checkpoint(tmp_path / "last.pth"), load_checkpoint(tmp_path / "best.pth")
    assert last.training["epoch"] == 1 and "optimizer" in last.training and finite(last.model_state)
    assert best.training["epoch"] == 1 and finite(best.model_state)
    assert last.build_model() is not None
    rows = strict_rows(tmp_path / "metrics.jsonl")
    assert [row["epoch"] for row in rows] == [1] and all(math.isfinite(v) for v in rows[0].values())


def _nan_validation(monkeypatch):
    original = train_module.validate
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: {**original(*a, **k), "val_loss": float("nan")})


def _inf_weights_finite_metrics(monkeypatch):
    """A weight goes inf at the end of the epoch while every reported number stays finite."""
    original = train_module.train_one_epoch

    def train_one_epoch(model, *args, **kwargs):
        result = original(model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters())[0] = float("inf")
        return result

    monkeypatch.setattr(train_module, "train_one_epoch", train_one_epoch)
    monkeypatch.setattr(train_module, "validate", lambda *a, **k: {"val_loss": 1.0, "val_top1": 0.5, "val_top5": 1.0})


@pytest.mark.parametrize(
    "patch, message",
    [
        (_nan_validation, "training diverged: validation loss is nan after epoch 1"),
        (_inf_weights_finite_metrics, "training diverged: the weights hold nan/inf after epoch 1"),
    ],
)
def test_non_finite_validation_or_weights_save_nothing(tmp_path, monkeypatch, patch, message):
    patch(monkeypatch)
    out = tmp_path / "run"
    result = run_cli(out, "--epochs", "1")
    assert result.exit_code == 1 and message in result.output and "lower --lr" in result.output, result.output
    assert not out.exists()  # no best.pth, no metrics.jsonl with NaN: nothing at all


@pytest.fixture
def no_data(monkeypatch):
    """Building the data set fails the test: the flags must be refused before."""

    def refuse(*args, **kwargs):
        raise AssertionError("load_data called: the bad flag was not refused up front")

    monkeypatch.setattr(train_module, "load_data", refuse)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--weight-decay", "-1"),
        ("--momentum", "-5"),
        ("--momentum", "1"),
        ("--lr", "0"),
        ("--lr", "-1"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--gamma", "0"),
        ("--gamma", "1.5"),
        ("--warmup-epochs", "nan"),
        ("--weight-decay", "inf"),
        ("--seed", "-1"),
    ],
)
def test_bad_hyper_parameters_are_usage_errors(tmp_path, no_data, flag, value):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_cli, ["--out", str(out), flag, value])
    assert result.exit_code == 2, result.output
    assert flag in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("lr", float("nan"), "--lr must be a finite number > 0 (got nan)"),
        ("lr", 0.0, "--lr must be a finite number > 0"),
        ("weight_decay", -1.0, "--weight-decay must be a finite number >= 0"),
        ("momentum", -5.0, "--momentum must be a number in [0, 1)"),
        ("gamma", 0.0, "--gamma must be a number in (0, 1]"),
        ("warmup_epochs", float("inf"), "--warmup-epochs must be a finite number >= 0"),
        ("batch_size", 0, "--batch-size must be an integer >= 1"),
        ("epochs", 1.5, "--epochs must be an integer >= 1"),
        ("optimizer", "adam", "--optimizer must be one of sgd, adamw"),
    ],
)
def test_train_api_validates_arguments(tmp_path, no_data, field, value, message):
    with pytest.raises(TrainError) as error:
        train(TrainArgs(out=str(tmp_path / "run"), **{field: value}), echo=lambda s: None)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def _crafted_last(path, *, args, weights=None):
    """A resumable last.pth without training: the tiny run's model, its arguments as given."""
    config = AlexNetConfig(variant="cifar", num_classes=8, dropout=0.0, width_divisor=SMALL)
    torch.manual_seed(0)
    state = AlexNet(config).state_dict()
    if weights is not None:
        next(iter(state.values())).fill_(weights)
    training = {"epoch": 1, "best_top1": 0.0, "history": [], "args": args, "optimizer": {}, "scaler": {}}
    save_checkpoint(
        Checkpoint(config, state, list(SYNTHETIC_CLASSES), default_preprocess("synthetic", 32), training), path
    )


def test_resume_validates_the_stored_arguments_and_weights(tmp_path, no_data):
    good = resolve_recipe(TrainArgs(variant="cifar", image_size=32, batch_size=8)).to_dict()
    _crafted_last(tmp_path / "tampered.pth", args={**good, "weight_decay": -1.0})
    with pytest.raises(TrainError, match=r"--weight-decay must be a finite number >= 0 \(got -1.0\)"):
        train(TrainArgs(out=str(tmp_path / "a")), resume=str(tmp_path / "tampered.pth"), explicit=set())
    _crafted_last(tmp_path / "alien.pth", args={**good, "no_such_knob": 1})
    with pytest.raises(TrainError, match="stored training arguments"):
        train(TrainArgs(out=str(tmp_path / "b")), resume=str(tmp_path / "alien.pth"), explicit=set())
    _crafted_last(tmp_path / "nan.pth", args=good, weights=float("nan"))
    with pytest.raises(DivergenceError, match="non-finite weights"):
        train(TrainArgs(out=str(tmp_path / "c")), resume=str(tmp_path / "nan.pth"), explicit=set())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alien.pth", "nan.pth", "tampered.pth"]


def test_failed_run_removes_only_the_empty_folders_it_made(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    data = ["--data", str(tmp_path / "empty")]
    made = tmp_path / "new" / "deeper" / "run"
    result = CliRunner().invoke(train_cli, [*data, "--out", str(made)])
    assert result.exit_code == 1 and "no images found" in result.output
    assert not (tmp_path / "new").exists()  # all three levels were this run's and stayed empty
    existing = tmp_path / "existing"
    existing.mkdir()
    assert CliRunner().invoke(train_cli, [*data, "--out", str(existing)]).exit_code == 1
    assert existing.is_dir()  # not this run's: kept although empty
    parent = tmp_path / "parent"
    (parent / "keep.txt").parent.mkdir()
    (parent / "keep.txt").write_text("x")
    assert CliRunner().invoke(train_cli, [*data, "--out", str(parent / "run")]).exit_code == 1
    assert not (parent / "run").exists() and (parent / "keep.txt").read_text() == "x"


def test_error_in_a_dataloader_worker_keeps_its_message(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(tmp_path / "data" / split / name / f"{i}.png")
    (tmp_path / "data" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        train_cli,
        [
            "--data",
            str(tmp_path / "data"),
            "--variant",
            "cifar",
            "--image-size",
            "32",
            "--batch-size",
            "5",
            "--epochs",
            "1",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 1, result.output
    error = result.output.rsplit("Error: ", 1)[1]
    assert "broken.png" in error and "DataLoader worker" not in error and error.count("\n") == 1, result.output
    assert not out.exists()


def _good_training(**changes):
    args = resolve_recipe(TrainArgs(variant="cifar", image_size=32, batch_size=8)).to_dict()
    return {"epoch": 1, "best_top1": 0.5, "history": [], "args": args, "optimizer": {}, "scaler": {}, **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epoch": "1"}, "training epoch must be an integer in [0, 4], got '1'"),
        ({"epoch": 5}, "training epoch must be an integer in [0, 4], got 5"),
        ({"epoch": True}, "training epoch must be an integer"),
        ({"best_top1": float("nan")}, "best_top1 must be a number in [-1, 1], got nan"),
        ({"history": [{"epoch": 1}]}, "history must be a list of at most 1 metrics rows"),
        ({"history": "rows"}, "history must be a list"),
        ({"optimizer": [1, 2]}, "optimizer state must be a dict, got list"),
        ({"args": "lr=1"}, "stored training arguments are not this version's"),
    ],
)
def test_resume_checks_every_field_of_the_training_section(tmp_path, no_data, changes, message):
    from alexnet.recipe import TrainState

    with pytest.raises(TrainError) as error:
        TrainState.from_dict(_good_training(**changes), "last.pth")
    assert message in str(error.value) and "\n" not in str(error.value)
    config = AlexNetConfig(variant="cifar", num_classes=8, dropout=0.0, width_divisor=SMALL)
    ckpt = Checkpoint(
        config, AlexNet(config).state_dict(), list(SYNTHETIC_CLASSES), default_preprocess("synthetic", 32), None
    )
    ckpt.training = _good_training(**changes)
    save_checkpoint(ckpt, tmp_path / "last.pth")
    with pytest.raises(TrainError, match="last.pth: its"):  # the whole path: refused before any data is built
        train(TrainArgs(out=str(tmp_path / "run")), resume=str(tmp_path / "last.pth"), explicit=set())
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_between_read_backs_names_its_own_step():
    """Losses stay on the device and are read back every SYNC_EVERY steps; the error still names
    the first non-finite step and its learning rate."""
    steps = trainloop.SYNC_EVERY + 5
    batches = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])) for _ in range(steps)]
    batches[2][0][0, 0] = float("nan")  # step 3's loss
    model = torch.nn.Linear(3, 2)
    args = resolve_recipe(TrainArgs(epochs=1, lr=0.1, warmup_epochs=0.0, schedule="step"))
    optimizer = trainloop.build_optimizer(model, args)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with pytest.raises(DivergenceError, match=r"loss is nan at epoch 1, step 3 \(lr 0.1\)"):
        trainloop.train_one_epoch(model, batches, optimizer, scaler, args, torch.device("cpu"), 0, 0, None)
