"""Images for int8 calibration and for the accuracy gate, from one data argument.

DATA is `synthetic`, `cifar10:DIR`, `stl10:DIR`, an ImageFolder (DIR/train/<class>/ +
DIR/val/<class>/, or DIR/<class>/) or a flat folder of images. Calibration takes the training
side, the gate the held-out side, so the gate never sees a calibration image:
- synthetic, CIFAR-10, STL-10 and DIR/train + DIR/val: the train and val splits;
- DIR/<class>/: the same seeded 80/20 split per class that training uses (read_imagefolder);
- a flat folder: images whose name hashes to 0 mod 5 are held out.
With separate gate data (--gate-data) nothing is held out: a folder calibrates on all its images.
Labels are never needed for calibration; the gate uses them, mapped to the checkpoint's
classes by name, where there are any.

Images are loaded lazily and preprocessed one by one with the artifact's own spec
(`runtime.preprocess`), so a calibration set never sits in memory whole; unreadable images
are skipped and counted.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from export.common import ExportError
from runtime.errors import DeployError
from runtime.pipeline import default_workers, ordered_map
from runtime.preprocess import IMAGE_SUFFIXES, ImageInput, PreprocessSpec, preprocess_image

HELD_OUT_BUCKETS = 5  # a flat folder: 1 image in 5 is held out for the gate


@dataclass(frozen=True)
class ImageSet:
    """`count` images, loaded on demand; labels index the checkpoint's classes (None: unknown)."""

    description: str
    labels: Sequence[int | None]
    load: Callable[[int], ImageInput]

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def labelled(self) -> bool:
        return any(label is not None for label in self.labels)


@dataclass
class ReadLog:
    """What one pass over an ImageSet read: images used, unreadable ones skipped, the first error."""

    read: int = 0
    skipped: int = 0
    first_error: str = ""

    def skip(self, message: str) -> None:
        self.skipped += 1
        self.first_error = self.first_error or message


def batches(
    images: ImageSet,
    spec: PreprocessSpec,
    *,
    limit: int,
    batch_size: int,
    log: ReadLog,
    desc: str | None = None,
    workers: int | None = None,
) -> Iterator[tuple[np.ndarray, list[int | None]]]:
    """Preprocessed batches ((n, 3, crop, crop) float32, their labels) of the first `limit` readable images,
    decoded on `workers` threads (default: runtime.pipeline's) at most a batch ahead of the caller.

    `desc`: a progress bar of that name on stderr, shown on a terminal only (logs stay clean)."""
    from tqdm import tqdm

    workers = default_workers() if workers is None else workers
    loaded = ordered_map(
        functools.partial(_preprocessed, images, spec), range(images.count), workers=workers, ahead=batch_size + workers
    )
    arrays, labels, taken = [], [], 0
    progress = tqdm(total=limit, desc=desc, unit="img", leave=False, disable=None if desc else True)
    with progress, contextlib.closing(loaded):
        for index, array in enumerate(loaded):
            if taken == limit:
                break
            if isinstance(array, DeployError):  # ImageLoadError, InputTooSmallError: skip, count, go on
                log.skip(str(array))
                continue
            arrays.append(array)
            labels.append(images.labels[index])
            taken += 1
            log.read += 1
            progress.update(1)
            if len(arrays) == batch_size:
                yield np.stack(arrays), labels
                arrays, labels = [], []
    if arrays:
        yield np.stack(arrays), labels


def _preprocessed(images: ImageSet, spec: PreprocessSpec, index: int) -> np.ndarray | DeployError:
    """Image `index` preprocessed, or the one-line error that makes it skipped."""
    try:
        return preprocess_image(images.load(index), spec)
    except DeployError as exc:
        return exc


def resolve_sets(
    data: str, class_names: Sequence[str], spec: PreprocessSpec, *, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """(calibration set, held-out gate set) of one data argument."""
    kind, location = _split_source(data)
    if kind == "synthetic":
        return _synthetic("train", class_names, spec, seed), _synthetic("val", class_names, spec, seed)
    if kind in ("cifar10", "stl10"):
        return _arrays(kind, location, "train", class_names), _arrays(kind, location, "val", class_names)
    root = _folder(location)
    if (root / "train").is_dir():
        return _imagefolder(root, "train", class_names, seed), _imagefolder(root, "val", class_names, seed)
    if _class_folders(root):
        calib = _imagefolder(root, "train", class_names, seed)
        try:
            return calib, _imagefolder(root, "val", class_names, seed)
        except ExportError:  # the train side has images: the split left none for val
            raise _too_few_to_hold_out(root, calib.count) from None
    kept, held_out = _flat_split(root, _flat_images(root))
    return _paths(f"{root} (4 in 5 images)", kept), _paths(f"{root} (held-out 1 in 5)", held_out)


def _flat_split(root: Path, paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration, held-out) images of a flat folder: names hashing to 0 mod 5 are held out."""
    if len(paths) == 1:
        raise _too_few_to_hold_out(root, 1)
    hashes = {p: zlib.crc32(p.name.encode()) for p in paths}
    held_out = [p for p in paths if hashes[p] % HELD_OUT_BUCKETS == 0]
    if paths and len(held_out) in (0, len(paths)):
        # A few names can all hash to one side, which left nothing to calibrate on or to gate with:
        # then the lowest hash alone is held out (a split that is still fixed by the names).
        held_out = [min(paths, key=hashes.get)]
    held = set(held_out)
    return [p for p in paths if p not in held], held_out


def _too_few_to_hold_out(root: Path, count: int) -> ExportError:
    # Said plainly: "no gate images" or "no images for split 'val'" would blame a folder that has images.
    return ExportError(
        f"{root} has {count} image{'s' if count != 1 else ''}, too few to hold some out of calibration "
        "for the accuracy gate; pass --gate-data (images for the gate)"
    )


def resolve_calibration(
    data: str, gate_data: str | None, class_names: Sequence[str], spec: PreprocessSpec, *, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """(calibration set, gate set): without `gate_data` those of `resolve_sets`. With it nothing needs
    holding out, so a folder calibrates on every image it has (a dataset, on its train split)."""
    if gate_data is None:
        return resolve_sets(data, class_names, spec, seed=seed)
    kind, location = _split_source(data)
    if kind == "synthetic":
        calib = _synthetic("train", class_names, spec, seed)
    elif kind in ("cifar10", "stl10"):
        calib = _arrays(kind, location, "train", class_names)
    else:
        root = _folder(location)
        tops = [root / split for split in ("train", "val") if (root / split).is_dir()] or [root]
        calib = _every_image(f"{root} (every image)", tops, class_names)
    return calib, resolve_gate_set(gate_data, class_names, spec, seed=seed)


def resolve_gate_set(data: str, class_names: Sequence[str], spec: PreprocessSpec, *, seed: int = 0) -> ImageSet:
    """--gate-data: the val split of a dataset or split folder; every image of any other folder."""
    kind, location = _split_source(data)
    if kind == "synthetic":
        return _synthetic("val", class_names, spec, seed)
    if kind in ("cifar10", "stl10"):
        return _arrays(kind, location, "val", class_names)
    root = _folder(location)
    if (root / "val").is_dir():
        return _imagefolder(root, "val", class_names, seed)
    return _every_image(str(root), [root], class_names)


def _split_source(data: str) -> tuple[str, str]:
    from alexnet.data import _split_source as split_source  # the one parser of data arguments

    return split_source(data)


def _label(name: str, class_names: Sequence[str]) -> int | None:
    return class_names.index(name) if name in class_names else None


def _synthetic(split: str, class_names: Sequence[str], spec: PreprocessSpec, seed: int) -> ImageSet:
    from alexnet.data import SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_VAL_PER_CLASS
    from alexnet.synthetic import SYNTHETIC_CLASSES, render_synthetic

    per_class = SYNTHETIC_TRAIN_PER_CLASS if split == "train" else SYNTHETIC_VAL_PER_CLASS
    count = per_class * len(SYNTHETIC_CLASSES)
    # image i has class i mod 8 (render_synthetic interleaves the classes)
    labels = [_label(SYNTHETIC_CLASSES[i % len(SYNTHETIC_CLASSES)], class_names) for i in range(count)]

    def load(index: int) -> Image.Image:
        return render_synthetic(index, split=split, image_size=spec.resize, seed=seed)[0]

    return ImageSet(f"synthetic {split} split (seed {seed})", labels, load)


def _arrays(kind: str, location: str, split: str, class_names: Sequence[str]) -> ImageSet:
    from alexnet.dataset_readers import DataError, read_cifar10, read_stl10

    try:
        pixels, labels, names = (read_cifar10 if kind == "cifar10" else read_stl10)(location, split)
    except (DataError, OSError) as exc:
        raise ExportError(f"{kind}:{location}: {exc}") from exc
    mapped = [_label(names[label], class_names) for label in labels]
    return ImageSet(f"{kind}:{location} {split} split", mapped, lambda i: Image.fromarray(pixels[i], "RGB"))


def _folder(location: str) -> Path:
    root = Path(location)
    if not root.exists():
        raise ExportError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ExportError(f"{root} is not a folder of images (or synthetic, cifar10:DIR, stl10:DIR)")
    return root


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _flat_images(p, True))


def _flat_images(directory: Path, recursive: bool = False) -> list[Path]:
    # is_file(): FIFOs, devices and sockets named like images are skipped, never opened.
    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _every_image(description: str, tops: list[Path], class_names: Sequence[str]) -> ImageSet:
    """Every image in the class folders of `tops` (labelled by folder name); without class folders,
    every image directly in them."""
    folders = [d for top in tops for d in _class_folders(top)]
    if folders:
        pairs = [(p, _label(d.name, class_names)) for d in folders for p in _flat_images(d, recursive=True)]
        return _labelled_paths(description, pairs)
    return _paths(description, [p for top in tops for p in _flat_images(top)])


def _imagefolder(root: Path, split: str, class_names: Sequence[str], seed: int) -> ImageSet:
    from alexnet.dataset_readers import DataError, read_imagefolder

    try:
        paths, labels, names = read_imagefolder(str(root), split, seed=seed)
    except DataError as exc:
        raise ExportError(str(exc)) from exc
    pairs = [(path, _label(names[label], class_names)) for path, label in zip(paths, labels)]
    return _labelled_paths(f"{root} {split} split", pairs)


def _labelled_paths(description: str, pairs: list[tuple[Path, int | None]]) -> ImageSet:
    paths = [p for p, _ in pairs]
    return ImageSet(description, [label for _, label in pairs], lambda i: paths[i])


def _paths(description: str, paths: list[Path]) -> ImageSet:
    return ImageSet(description, [None] * len(paths), lambda i: paths[i])
