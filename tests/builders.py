"""Models and checkpoints the tests share (not a test module: test modules import from here,
never from each other)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from alexnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from alexnet.model import AlexNet, AlexNetConfig, build_alexnet
from runtime.preprocess import PreprocessSpec

CLASSES = ["circle", "square", "triangle", "star", "cross"]


def saved_checkpoint(path, variant="cifar", size=32, num_classes=5):
    torch.manual_seed(0)
    config = AlexNetConfig(variant=variant, num_classes=num_classes)
    names = CLASSES if num_classes == 5 else [f"c{i}" for i in range(num_classes)]
    ckpt = Checkpoint(config, AlexNet(config).state_dict(), names, PreprocessSpec(resize=size, crop=size))
    return save_checkpoint(ckpt, path)


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


def checkpoint_object(variant="cifar", classes=3, training=None):
    """An untrained, unsaved Checkpoint (resize 36, crop 32)."""
    model = build_alexnet(variant=variant, num_classes=classes)
    return Checkpoint(
        config=model.config,
        model_state=model.state_dict(),
        class_names=[f"c{i}" for i in range(classes)],
        preprocess=PreprocessSpec(resize=36, crop=32),
        training=training,
    )
