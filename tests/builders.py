"""Models and checkpoints the tests share (not a test module: test modules import from here,
never from each other)."""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

from alexnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from alexnet.model import AlexNet, AlexNetConfig, build_alexnet
from runtime.preprocess import PreprocessSpec

CLASSES = ["circle", "square", "triangle", "star", "cross"]

# The tests' models: every variant's layer structure at 1/16 of its widths (AlexNetConfig's
# width_divisor): ~0.23M parameters, a 1 MB checkpoint instead of 230 MB. Tests where size is
# the point (parameter counts, torchvision's weights, int8 speed structure, one export per format)
# pass width_divisor=1 and are marked slow.
SMALL = 16


def saved_checkpoint(path, variant="cifar", size=32, num_classes=5, width_divisor=SMALL):
    torch.manual_seed(0)
    config = AlexNetConfig(variant=variant, num_classes=num_classes, width_divisor=width_divisor)
    names = CLASSES if num_classes == 5 else [f"c{i}" for i in range(num_classes)]
    ckpt = Checkpoint(config, AlexNet(config).state_dict(), names, PreprocessSpec(resize=size, crop=size))
    return save_checkpoint(ckpt, path)


@contextlib.contextmanager
def narrow_training():
    """While open, alexnet.train builds the tests' 1/16-width model: the same layers, loop,
    checkpoints and resume at a fraction of the time. The width travels in each checkpoint's
    config, so resuming, evaluating and exporting rebuild the same model."""
    import pytest

    import alexnet.train

    def narrow_config(**fields):
        return AlexNetConfig(**fields, width_divisor=SMALL)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(alexnet.train, "AlexNetConfig", narrow_config)
        yield


@functools.lru_cache(maxsize=4)
def _pytorch_model(ckpt_path):
    return load_checkpoint(ckpt_path).build_model()  # ~1.5 s for 58M parameters: build once per checkpoint


def reference(ckpt_path, batch):
    with torch.inference_mode():
        return _pytorch_model(str(ckpt_path))(torch.from_numpy(batch)).numpy()


def assert_agrees(got, ref, atol=1e-4):
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=atol, rtol=0)
    assert (got.argmax(1) == ref.argmax(1)).all()


def random_batch(n, size=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def checkpoint_object(variant="cifar", classes=3, training=None, width_divisor=SMALL):
    """An untrained, unsaved Checkpoint (resize 36, crop 32), small unless width_divisor=1."""
    model = build_alexnet(variant=variant, num_classes=classes, width_divisor=width_divisor)
    return Checkpoint(
        config=model.config,
        model_state=model.state_dict(),
        class_names=[f"c{i}" for i in range(classes)],
        preprocess=PreprocessSpec(resize=36, crop=32),
        training=training,
    )


def checkpoint_dict(**changes):
    """An alexnet-deploy checkpoint dict without weights (cifar, 4 classes, crop 32) for torch.save:
    a crafted file's fields are checked before any layer is built, so none is needed."""
    data = {
        "format": "alexnet-deploy-checkpoint",
        "format_version": 1,
        "package_version": "0",
        "model_config": AlexNetConfig(variant="cifar", num_classes=4).to_dict(),
        "class_names": ["a", "b", "c", "d"],
        "preprocess": PreprocessSpec(resize=36, crop=32).to_dict(),
        "model_state": {},
    }
    data.update(changes)
    return data
