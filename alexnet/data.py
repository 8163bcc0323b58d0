"""Datasets: `synthetic` (embedded), an ImageFolder directory, CIFAR-10 and STL-10 from local files.

`load_data(DATA)` gives the train split (augmented, alexnet/augment.py) and the val split
(runtime/preprocess.py, the eval pipeline). Nothing is ever downloaded.

    DATA            val split                      eval preprocessing (S = image_size)
    synthetic       its own seeded val images      resize S, crop S, ImageNet mean/std
    DIR             DIR/val, or val_fraction of    PreprocessSpec.for_image_size(S); S <= 64:
                    each DIR/<class>, seeded       resize S, crop S
    cifar10:DIR     test_batch                     resize S, crop S, CIFAR-10 mean/std
    stl10:DIR       test_X.bin / test_y.bin        as DIR

S defaults to the variant's size (torchvision 224, paper 227, cifar 32); synthetic (64), CIFAR-10 (32)
and STL-10 (96) keep their own unless the variant's is smaller (alexnet/input_size.py).

Training augmentation (alexnet/augment.py, `--augment`, `--no-flip`): by default a 4-px padded random
crop + flip for CIFAR-10 and inputs of 64 px or less; a random resized crop + flip for larger folders
and STL-10 (scale (0.08, 1) as torchvision); flip only for the synthetic shapes, whose generator
already randomizes size, position and rotation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from alexnet.augment import SMALL_INPUT, TrainTransform, default_augment
from alexnet.dataset_readers import DataError, read_cifar10, read_imagefolder, read_stl10
from alexnet.input_size import NATIVE_IMAGE_SIZE, data_kind, default_image_size, small_images_notice
from alexnet.synthetic import SYNTHETIC_CLASSES, render_synthetic
from runtime.errors import DeployError
from runtime.preprocess import PreprocessSpec, load_image, preprocess_image

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# Embedded default: 8 shape classes x 500 train / 50 val images (4,000 / 400) at 64 px,
# rendered in ~5 s. Sized so the default recipe's 4 epochs on 2 CPU cores stay within a few
# minutes and reach >= 90% val top-1 (alexnet/trainloop.py RECIPES notes the measurement).
SYNTHETIC_TRAIN_PER_CLASS = 500
SYNTHETIC_VAL_PER_CLASS = 50
SYNTHETIC_IMAGE_SIZE = NATIVE_IMAGE_SIZE["synthetic"]


@dataclass
class DataBundle:
    train: Dataset  # items: (float32 tensor (3, S, S), int label), augmented
    val: Dataset  # items: (float32 tensor (3, S, S), int label), eval preprocessing
    class_names: list[str]
    preprocess: PreprocessSpec  # the eval preprocessing; travels in checkpoints
    name: str
    augment: str = "none"  # the train split's (alexnet/augment.py AUGMENTATIONS), resolved
    flip: bool = True


class ImageDataset(Dataset):
    """(image source, label) pairs -> (tensor, label) through a train or eval transform.

    A source is a path (decoded on access) or an index into an in-memory uint8 array
    (N, H, W, 3). A train item seeds its own numpy Generator from one draw of torch's RNG:
    in a DataLoader worker that RNG was seeded from the loader's generator (base seed +
    worker id), in the main process it is the global one. So a fixed seed (and a fixed
    worker count) gives the same augmentations run after run.
    """

    def __init__(
        self,
        sources: Sequence[Any],
        labels: Sequence[int],
        transform: Callable,
        *,
        train: bool,
        pixels: np.ndarray | None = None,
    ) -> None:
        self.sources, self.labels, self.transform, self.train, self.pixels = (
            list(sources),
            list(labels),
            transform,
            train,
            pixels,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        source = self.sources[index]
        return Image.fromarray(self.pixels[source], "RGB") if self.pixels is not None else load_image(source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            array = self.transform(self.image(index), rng)
        else:  # a file goes to preprocess_image as a path: a large JPEG is decoded at the size it needs
            array = self.transform(self.image(index) if self.pixels is not None else self.sources[index])
        return torch.from_numpy(array), self.labels[index]


def reraise_worker_error(exc: DeployError) -> NoReturn:
    """Re-raise `exc` with its original one-line message if it came from a DataLoader worker.

    torch re-raises a worker's exception as the same type, but with "Caught ImageLoadError in
    DataLoader worker process 1. Original Traceback ..." as its message; the file name is only
    in the traceback's last line ("runtime.preprocess.ImageLoadError: x.png: ..."). Any other
    exception is re-raised unchanged. Call it in an ``except DeployError as exc:`` clause.
    """
    lines = str(exc).splitlines()
    if lines and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        module = type(exc).__module__
        prefix = ("" if module in ("__main__", "builtins") else module + ".") + type(exc).__qualname__ + ": "
        for line in reversed(lines):
            if line.startswith(prefix):
                raise type(exc)(line[len(prefix) :]) from None
    raise exc


class UnwrappedLoader:
    """Iterate a DataLoader (len() works, for progress bars), re-raising errors from its worker
    processes with their original one-line message (`reraise_worker_error`)."""

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.loader
        except DeployError as exc:
            reraise_worker_error(exc)


def _eval_transform(spec: PreprocessSpec) -> Callable[[Image.Image], np.ndarray]:
    # A partial, not a lambda: DataLoader workers started by spawn (macOS, Windows) pickle the dataset.
    return functools.partial(preprocess_image, spec=spec)


def _render_split(split: str, count: int, image_size: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """All images of a synthetic split as one uint8 array (N, S, S, 3): rendered once, shared by workers."""
    pixels = np.empty((count, image_size, image_size, 3), np.uint8)
    labels = []
    for index in range(count):
        image, label = render_synthetic(index, split=split, image_size=image_size, seed=seed)
        pixels[index] = np.asarray(image)
        labels.append(label)
    return pixels, labels


def _split_source(data: str) -> tuple[str, str]:
    """ "cifar10:~/x" -> ("cifar10", "/home/me/x"); the shell leaves a "~" after a colon alone."""
    for kind in ("cifar10", "stl10"):
        if data.startswith(kind + ":"):
            return kind, os.path.expanduser(data[len(kind) + 1 :])
    return ("synthetic", "") if data == "synthetic" else ("folder", os.path.expanduser(data))


def _arrays(
    data: str, split: str, image_size: int | None, seed: int, val_fraction: float, synthetic_counts: tuple[int, int]
) -> tuple[Any, list[int], list[str], np.ndarray | None, str]:
    """(sources, labels, class_names, pixels or None, display name) of one split."""
    kind, location = _split_source(data)
    try:
        if kind == "synthetic":
            count = synthetic_counts[0 if split == "train" else 1] * len(SYNTHETIC_CLASSES)
            pixels, labels = _render_split(
                "train" if split == "train" else "val", count, image_size or SYNTHETIC_IMAGE_SIZE, seed
            )
            return range(count), labels, list(SYNTHETIC_CLASSES), pixels, "synthetic"
        if kind == "cifar10":
            pixels, labels, names = read_cifar10(location, split)
            return range(len(labels)), labels, names, pixels, f"cifar10:{location}"
        if kind == "stl10":
            pixels, labels, names = read_stl10(location, split)
            return range(len(labels)), labels, names, pixels, f"stl10:{location}"
        paths, labels, names = read_imagefolder(location, split, seed=seed, val_fraction=val_fraction)
        return paths, labels, names, None, f"imagefolder:{location}"
    except OSError as exc:  # unreadable files: permissions, I/O errors
        raise DataError(f"{data}: cannot read {exc.filename or location}: {exc.strerror or exc}") from exc


def default_preprocess(data: str, image_size: int | None, variant: str = "torchvision") -> PreprocessSpec:
    """The eval preprocessing at `image_size` (None: alexnet/input_size.py's default for the data and variant)."""
    kind, size = data_kind(data), image_size or default_image_size(data, variant)
    if kind == "synthetic":
        return PreprocessSpec(resize=size, crop=size)
    if kind == "cifar10":
        return PreprocessSpec(resize=size, crop=size, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    if size <= SMALL_INPUT:  # small images, trained with "light" crops of the whole image: no 256/224 border cut
        return PreprocessSpec(resize=size, crop=size)
    return PreprocessSpec.for_image_size(size)


def size_notice(bundle: DataBundle, data: str) -> str | None:
    """A folder whose images are much smaller than the input in use: one line saying so (else None)."""
    if data_kind(data) != "folder":
        return None
    return small_images_notice(bundle.train.sources, bundle.preprocess.crop, data)


def load_data(
    data: str,
    *,
    image_size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    synthetic_train_per_class: int = SYNTHETIC_TRAIN_PER_CLASS,
    synthetic_val_per_class: int = SYNTHETIC_VAL_PER_CLASS,
    variant: str = "torchvision",
    augment: str | None = None,
    flip: bool = True,
) -> DataBundle:
    """Both splits; `image_size` and `augment` left None take the data's and `variant`'s defaults."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    spec = default_preprocess(data, image_size, variant)
    image_size = spec.crop  # synthetic images are rendered at the input size
    counts = (synthetic_train_per_class, synthetic_val_per_class)
    train_src, train_labels, names, train_px, name = _arrays(data, "train", image_size, seed, val_fraction, counts)
    val_src, val_labels, val_names, val_px, _ = _arrays(data, "val", image_size, seed, val_fraction, counts)
    if names != val_names:
        only_train, only_val = sorted(set(names) - set(val_names)), sorted(set(val_names) - set(names))
        raise DataError(
            f"{data}: train and val classes differ (only in train: {', '.join(only_train) or '-'}; "
            f"only in val: {', '.join(only_val) or '-'})"
        )
    augment = augment or default_augment(data_kind(data), spec.crop)
    return DataBundle(
        train=ImageDataset(
            train_src, train_labels, TrainTransform(spec, augment=augment, flip=flip), train=True, pixels=train_px
        ),
        val=ImageDataset(val_src, val_labels, _eval_transform(spec), train=False, pixels=val_px),
        class_names=names,
        preprocess=spec,
        name=name,
        augment=augment,
        flip=flip,
    )


def load_eval_split(
    data: str,
    *,
    split: str = "val",
    preprocess: PreprocessSpec,
    seed: int = 0,
    val_fraction: float = 0.2,
    synthetic_val_per_class: int = SYNTHETIC_VAL_PER_CLASS,
    synthetic_train_per_class: int = SYNTHETIC_TRAIN_PER_CLASS,
) -> tuple[Dataset, list[str]]:
    """One split with eval preprocessing; for `synthetic` the same images training validated on."""
    if split not in ("train", "val"):
        raise DataError(f"unknown split {split!r}; choose train or val")
    kind, _ = _split_source(data)
    size = preprocess.resize if kind == "synthetic" else None
    sources, labels, names, pixels, _ = _arrays(
        data, split, size, seed, val_fraction, (synthetic_train_per_class, synthetic_val_per_class)
    )
    return ImageDataset(sources, labels, _eval_transform(preprocess), train=False, pixels=pixels), names
