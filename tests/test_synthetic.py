"""The embedded synthetic shapes set: deterministic, balanced, any size, and learnable from shape alone."""

import numpy as np
import pytest
from PIL import Image

from alexnet.synthetic import SYNTHETIC_CLASSES, render_synthetic, write_synthetic_imagefolder

N = len(SYNTHETIC_CLASSES)


def pixels(image):
    return np.asarray(image)


def test_classes_are_distinct_names():
    assert 8 <= N <= 10 and len(set(SYNTHETIC_CLASSES)) == N


def test_deterministic_by_seed_and_split():
    a, label_a = render_synthetic(5, split="train", image_size=40, seed=1)
    b, label_b = render_synthetic(5, split="train", image_size=40, seed=1)
    assert label_a == label_b and np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(render_synthetic(5, split="train", image_size=40, seed=2)[0]))
    assert not np.array_equal(pixels(a), pixels(render_synthetic(5, split="val", image_size=40, seed=1)[0]))
    assert not np.array_equal(pixels(a), pixels(render_synthetic(5 + N, split="train", image_size=40, seed=1)[0]))


@pytest.mark.parametrize("size", [32, 64, 100])
def test_any_size_every_class_balanced(size):
    labels = []
    for index in range(2 * N):
        image, label = render_synthetic(index, split="val", image_size=size)
        assert isinstance(image, Image.Image) and image.size == (size, size) and image.mode == "RGB"
        labels.append(label)
    assert sorted(labels) == sorted(list(range(N)) * 2)  # every class, equally often


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        render_synthetic(0, split="test", image_size=32)


def _shape_features(image):
    """Colour-free, rotation-invariant shape features: radial histogram and fill of the foreground mask."""
    x = np.asarray(image, np.float32)  # (S, S, 3)
    s = x.shape[0]
    yy, xx = np.mgrid[0:s, 0:s]
    border = np.zeros((s, s), bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    design = np.stack([np.ones(s * s), xx.ravel(), yy.ravel()], 1)  # the background is a plane per channel
    coef, *_ = np.linalg.lstsq(design[border.ravel()], x.reshape(-1, 3)[border.ravel()], rcond=None)
    mask = np.abs(x.reshape(-1, 3) - design @ coef).sum(1).reshape(s, s) > 90
    ys, xs = np.nonzero(mask)
    r = np.hypot(ys - ys.mean(), xs - xs.mean())
    scale = r.max() + 1e-6
    hist = np.histogram(r / scale, bins=8, range=(0, 1))[0] / len(r)
    return np.concatenate([hist, [len(r) / (np.pi * scale**2)]])


def _colour_features(image):
    return np.asarray(image, np.float32).reshape(-1, 3).mean(0)


def _nearest_centroid_accuracy(features, train_per_class=20, val_per_class=8, size=64):
    train = [render_synthetic(i, split="train", image_size=size) for i in range(train_per_class * N)]
    val = [render_synthetic(i, split="val", image_size=size) for i in range(val_per_class * N)]
    f_train, y_train = np.stack([features(im) for im, _ in train]), np.array([y for _, y in train])
    f_val, y_val = np.stack([features(im) for im, _ in val]), np.array([y for _, y in val])
    centroids = np.stack([f_train[y_train == c].mean(0) for c in range(N)])
    scale = f_train.std(0) + 1e-6
    predicted = np.argmin((((f_val[:, None] - centroids[None]) / scale) ** 2).sum(-1), axis=1)
    return float((predicted == y_val).mean())


def test_class_is_the_shape_not_the_colour():
    # Learnability sanity without training: hand-made shape features separate the classes on
    # held-out images, while the mean colour carries (almost) no label information.
    assert _nearest_centroid_accuracy(_shape_features) >= 0.8
    assert _nearest_centroid_accuracy(_colour_features) <= 0.4  # chance is 1/8


def test_write_imagefolder_layout_and_pixels(tmp_path):
    counts = write_synthetic_imagefolder(tmp_path, per_class=2, val_per_class=1, image_size=36, seed=4)
    assert counts == {"train": 2 * N, "val": N}
    for split, per_class in (("train", 2), ("val", 1)):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == sorted(SYNTHETIC_CLASSES)
        assert all(len(list((tmp_path / split / c).glob("*.png"))) == per_class for c in SYNTHETIC_CLASSES)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"]  # no temp files left
    expected, label = render_synthetic(3, split="train", image_size=36, seed=4)
    with Image.open(tmp_path / "train" / SYNTHETIC_CLASSES[label] / "000003.png") as written:
        assert np.array_equal(pixels(written.convert("RGB")), pixels(expected))  # PNG is lossless


def test_write_imagefolder_default_val_count(tmp_path):
    assert write_synthetic_imagefolder(tmp_path, per_class=8, image_size=16) == {"train": 8 * N, "val": 2 * N}
