import os
import pickle

import pytest
import torch
from builders import checkpoint_dict, checkpoint_object

from alexnet.checkpoint import CheckpointError, imagenet_class_names, load_checkpoint, save_checkpoint
from alexnet.model import AlexNetConfig, build_alexnet
from runtime.preprocess import PreprocessSpec


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    ckpt = checkpoint_object(training={"epoch": 3, "rng": torch.get_rng_state(), "metrics": [{"top1": 0.5}]})
    path = save_checkpoint(ckpt, tmp_path / f"model{suffix}")
    loaded = load_checkpoint(path)
    assert loaded.config == ckpt.config
    assert loaded.class_names == ckpt.class_names
    assert loaded.preprocess == ckpt.preprocess
    assert_same_state(loaded.model_state, ckpt.model_state)
    if suffix == ".pth":
        assert loaded.training["epoch"] == 3 and torch.equal(loaded.training["rng"], ckpt.training["rng"])
    else:
        assert loaded.training is None  # weights-only format
    model = loaded.build_model()
    assert not model.training
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_bare_torchvision_state_dict_loads_as_imagenet_model(tmp_path, suffix):
    state = build_alexnet().state_dict()
    path = tmp_path / f"alexnet-owt{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_checkpoint(path)
    assert loaded.config == AlexNetConfig(variant="torchvision", num_classes=1000)
    assert (
        loaded.class_names[0] == "tench"
        and loaded.class_names[999] == "toilet tissue"
        and len(loaded.class_names) == 1000
    )
    assert loaded.preprocess == PreprocessSpec(resize=256, crop=224)
    assert_same_state(loaded.build_model().state_dict(), state)


def test_imagenet_names_are_unique_enough():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[151] == "Chihuahua"


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"format": "alexnet-deploy-checkpoint", "payload": Exploit()}, handle, protocol=2)
    with pytest.raises(
        CheckpointError, match=r"outside the allowed set .*: the global io\.open; it will not be loaded"
    ):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message", [(b"", "not a PyTorch checkpoint"), (b"\x00garbage" * 10, "not a PyTorch checkpoint")]
)
def test_corrupt_file(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")


def test_wrong_class_count_names_first_mismatching_layer(tmp_path):
    ckpt = checkpoint_object(classes=3)
    ckpt.config = AlexNetConfig(variant="cifar", num_classes=5, width_divisor=ckpt.config.width_divisor)
    with pytest.raises(
        CheckpointError,
        match=r"classifier\.6\.weight has shape \(3, 256\) in the checkpoint but \(5, 256\) in the model",
    ):
        ckpt.build_model()


def test_wrong_architecture_names_first_mismatching_layer():
    ckpt = checkpoint_object(variant="cifar")
    ckpt.config = AlexNetConfig(variant="torchvision", num_classes=3)
    with pytest.raises(
        CheckpointError,
        match=r"features\.0\.weight has shape \(6, 3, 11, 11\) in the checkpoint but \(64, 3, 11, 11\)",
    ):
        ckpt.build_model()


def test_bare_state_dict_of_another_layout_is_named(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not in torchvision's AlexNet layout"):
        load_checkpoint(path)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    first = checkpoint_object()
    save_checkpoint(first, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(checkpoint_object(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(checkpoint_object(), tmp_path / "missing" / "x.pth")


def test_newer_format_version_is_refused(tmp_path):
    data = checkpoint_object().to_dict()
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="newer than this alexnet-deploy"):
        load_checkpoint(tmp_path / "future.pth")


# --- issue 9: hostile checkpoints are one-line refusals that say what the file is -------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"preprocess": {"resize": 200_000, "crop": 32}}, "resize must be an integer from 1 to"),
        ({"class_names": "abcd"}, "class_names must be a list of strings"),
        ({"format_version": "2"}, "format_version must be an integer, got '2'"),
    ],
)
def test_checkpoint_fields_are_checked(tmp_path, change, message):
    torch.save(checkpoint_dict(**change), tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(tmp_path / "c.pth")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "header, message",
    [("not json {", "header is not valid JSON"), ("[1, 2]", "header must be a JSON object, not list")],
)
def test_safetensors_header_that_is_not_a_json_object(tmp_path, header, message):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "c.safetensors", metadata={"alexnet_deploy": header})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "c.safetensors")


def test_a_zip_that_is_not_a_checkpoint_says_so(tmp_path):
    import zipfile

    from runtime import ModelLoadError
    from runtime.backends import detect_backend

    path = tmp_path / "notes.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(ModelLoadError, match="is a zip archive but not a PyTorch checkpoint") as caught:
        detect_backend(path)
    assert "name it" not in str(caught.value)
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint: a zip archive without the data.pkl"):
        load_checkpoint(path)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_by_name_without_torchs_advice(tmp_path):
    import runtime

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"format": "alexnet-deploy-checkpoint", "payload": _RunsAShellCommand(marker)}, path)
    for load in (load_checkpoint, lambda p: runtime.load(p, device="cpu")):
        with pytest.raises(CheckpointError) as caught:
            load(path)
        message = str(caught.value)
        assert "\n" not in message and f"the global {os.system.__module__}.system" in message
        assert "outside the allowed set" in message and "will not be loaded" in message
        assert "weights_only" not in message and "Re-running" not in message
    assert not marker.exists()


def test_training_state_round_trips_with_the_same_keys():
    """A checkpoint's "training" section as TrainState: the keys on disk stay those of every checkpoint so far."""
    from alexnet.recipe import ROW_KEYS, TrainArgs, TrainState, resolve_recipe

    row = {key: 1 for key in ROW_KEYS}
    args = resolve_recipe(TrainArgs()).to_dict()
    data = {"epoch": 1, "best_top1": 0.5, "history": [{**row, "extra": "dropped"}], "args": args}
    data.update(optimizer={"state": {}, "param_groups": []}, scaler={})
    state = TrainState.from_dict(data, "x")
    assert state.to_dict() == {**data, "history": [row]}
    assert set(state.to_dict(resumable=False)) == {"epoch", "best_top1", "history", "args"}


# --- issue 26, item 5: a hostile model_config is refused wherever a checkpoint is opened ------------


def test_every_entry_point_refuses_a_huge_class_count_before_building(tmp_path, monkeypatch):
    """alexnet-info's test covers each field; here one hostile config through the other commands
    that build a model from a checkpoint: export, eval, the pytorch runtime backend, --resume."""
    from click.testing import CliRunner

    import runtime
    from alexnet.cli.eval import main as eval_main
    from alexnet.cli.train import main as train_main
    from alexnet.model import AlexNet
    from export.cli import main as export_main
    from runtime.errors import DeployError

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from the hostile config")

    monkeypatch.setattr(AlexNet, "__init__", no_model)
    path = tmp_path / "last.pth"
    torch.save(checkpoint_dict(model_config={"variant": "cifar", "num_classes": 10**9}), path)
    expected = "model_config.num_classes must be an integer from 1 to 100,000, got 1000000000"
    with pytest.raises(DeployError, match=expected) as caught:
        runtime.load(path, backend="pytorch")
    assert "\n" not in str(caught.value)
    commands = [
        (export_main, [str(path), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]),
        (eval_main, [str(path), "--data", "synthetic"]),
        (train_main, ["--out", str(tmp_path / "run"), "--resume", str(path)]),
    ]
    for command, args in commands:
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert len(result.output.strip().splitlines()) == 1 and expected in result.output


def test_a_bare_state_dict_with_an_empty_huge_last_layer_is_refused_before_naming_its_classes(tmp_path):
    # A (200000, 0) tensor holds no bytes; its shape alone must not size the class list or the model.
    state = {"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.6.weight": torch.zeros(200_000, 0)}
    torch.save(state, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match=r"bare.pth is a state_dict with classifier.6.weight \(200000, 0\): "):
        load_checkpoint(tmp_path / "bare.pth")
