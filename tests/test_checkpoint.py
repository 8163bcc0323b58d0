import os
import pickle

import pytest
import torch

from alexnet.checkpoint import Checkpoint, CheckpointError, imagenet_class_names, load_checkpoint, save_checkpoint
from alexnet.model import AlexNetConfig, build_alexnet
from runtime.preprocess import PreprocessSpec


def make_checkpoint(variant="cifar", classes=3, training=None):
    model = build_alexnet(variant=variant, num_classes=classes)
    return Checkpoint(
        config=model.config,
        model_state=model.state_dict(),
        class_names=[f"c{i}" for i in range(classes)],
        preprocess=PreprocessSpec(resize=36, crop=32),
        training=training,
    )


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    ckpt = make_checkpoint(training={"epoch": 3, "rng": torch.get_rng_state(), "metrics": [{"top1": 0.5}]})
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
    assert loaded.class_names[0] == "tench" and loaded.class_names[999] == "toilet tissue" and len(loaded.class_names) == 1000
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
    with pytest.raises(CheckpointError, match=r"was not unpickled .*Unsupported global: GLOBAL io.open"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [(b"", "not a readable"), (b"\x00garbage" * 10, "not a plain-weights checkpoint")])
def test_corrupt_file(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")


def test_wrong_class_count_names_first_mismatching_layer(tmp_path):
    ckpt = make_checkpoint(classes=3)
    ckpt.config = AlexNetConfig(variant="cifar", num_classes=5)
    with pytest.raises(CheckpointError, match=r"classifier\.6\.weight has shape \(3, 4096\) in the checkpoint but \(5, 4096\) in the model"):
        ckpt.build_model()


def test_wrong_architecture_names_first_mismatching_layer():
    ckpt = make_checkpoint(variant="cifar")
    ckpt.config = AlexNetConfig(variant="torchvision", num_classes=3)
    with pytest.raises(CheckpointError, match=r"features\.0\.weight has shape \(96, 3, 11, 11\) in the checkpoint but \(64, 3, 11, 11\)"):
        ckpt.build_model()


def test_bare_state_dict_of_another_layout_is_named(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not in torchvision's AlexNet layout"):
        load_checkpoint(path)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    first = make_checkpoint()
    save_checkpoint(first, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(make_checkpoint(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(make_checkpoint(), tmp_path / "missing" / "x.pth")


def test_newer_format_version_is_refused(tmp_path):
    data = make_checkpoint().to_dict()
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="newer than this alexnet-deploy"):
        load_checkpoint(tmp_path / "future.pth")
