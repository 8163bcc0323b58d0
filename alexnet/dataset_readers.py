"""Readers for datasets on local disk: ImageFolder trees, CIFAR-10 and STL-10 official files.

They return plain arrays/paths and labels; alexnet/data.py wraps them in Datasets.
Errors are DataError (a DeployError) with one-line messages listing what is expected;
unreadable files raise OSError, which alexnet/data.py turns into a DataError naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from runtime.errors import DeployError
from runtime.preprocess import IMAGE_SUFFIXES

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "class_names.txt"]


class DataError(DeployError, ValueError):
    """A dataset is missing, incomplete or inconsistent."""


def _require(root: Path, names: list[str], what: str) -> None:
    if not root.is_dir():
        raise DataError(f"{what} directory {root} does not exist; expected files: {', '.join(names)}")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(
            f"{what} directory {root} is incomplete: missing {', '.join(missing)} (expected: {', '.join(names)})"
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The official CIFAR-10 batches hold dicts of bytes, lists and numpy arrays; allow nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 file")


def _load_cifar_pickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        try:
            data = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DataError(f"{path} is not an official CIFAR-10 python batch: {exc}") from exc
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def read_cifar10(location: str, split: str) -> tuple[np.ndarray, list[int], list[str]]:
    """(pixels uint8 (N, 32, 32, 3), labels, class names); val is the official test_batch."""
    root = Path(location)
    _require(root, CIFAR10_FILES, "CIFAR-10 (python version, cifar-10-batches-py)")
    meta = _load_cifar_pickle(root / "batches.meta")
    if "label_names" not in meta:
        raise DataError(f"{root / 'batches.meta'} is not an official CIFAR-10 meta file: no 'label_names' entry")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"]]
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    pixels, labels = [], []
    for name in files:
        batch = _load_cifar_pickle(root / name)
        if "data" not in batch or "labels" not in batch:
            raise DataError(f"{root / name} is not an official CIFAR-10 python batch: no 'data'/'labels' entries")
        data = np.asarray(batch["data"], dtype=np.uint8)  # (N, 3072): R plane, G plane, B plane, row-major
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch["labels"]):
            raise DataError(
                f"{root / name}: expected data (N, 3072) with N labels, got {data.shape} "
                f"and {len(batch['labels'])} labels"
            )
        pixels.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(int(label) for label in batch["labels"])
    return np.ascontiguousarray(np.concatenate(pixels)), labels, names


def read_stl10(location: str, split: str) -> tuple[np.ndarray, list[int], list[str]]:
    """(pixels uint8 (N, 96, 96, 3), labels 0-based, class names); val is the official test split."""
    root = Path(location)
    _require(root, STL10_FILES, "STL-10 (binary version, stl10_binary)")
    prefix = "train" if split == "train" else "test"
    raw = np.fromfile(root / f"{prefix}_X.bin", dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DataError(f"{root / (prefix + '_X.bin')} has {raw.size} bytes, not a multiple of one 3x96x96 image")
    # Stored column-major per image: (N, 3, 96 [x], 96 [y]) -> (N, y, x, 3)
    pixels = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))
    labels = np.fromfile(root / f"{prefix}_y.bin", dtype=np.uint8).astype(int) - 1  # 1-based on disk
    names = [line.strip() for line in (root / "class_names.txt").read_text().splitlines() if line.strip()]
    if len(labels) != len(pixels):
        raise DataError(f"STL-10 {prefix}: {len(pixels)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"STL-10 {prefix}: labels outside 1..{len(names)}")
    return pixels, labels.tolist(), names


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(directory: Path) -> list[Path]:
    # is_file() is False for FIFOs, devices and sockets: they are skipped, never opened (a FIFO
    # named x.png would block the loader forever).
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_imagefolder(
    location: str, split: str, *, seed: int = 0, val_fraction: float = 0.2
) -> tuple[list[Path], list[int], list[str]]:
    """DIR/train/<class>/*, DIR/val/<class>/* — or DIR/<class>/* split per class by a seeded shuffle."""
    root = Path(location)
    if not root.is_dir():
        raise DataError(
            f"data directory {root} does not exist (expected DIR/train/<class>/*, DIR/val/<class>/* "
            f"or DIR/<class>/*; or use synthetic, cifar10:DIR, stl10:DIR)"
        )
    has_train, has_val = (root / "train").is_dir(), (root / "val").is_dir()
    if has_train != has_val:  # half a split layout; a class called "train" is more likely a mistake
        present, absent = ("train", "val") if has_train else ("val", "train")
        raise DataError(
            f"{root} has {present}/ but no {absent}/ (expected {root}/train/<class>/ and "
            f"{root}/val/<class>/, or class folders directly in {root})"
        )
    if has_train:
        classes_root = root / split
        names = [d.name for d in _class_dirs(classes_root)]
        samples = [(path, index) for index, d in enumerate(_class_dirs(classes_root)) for path in _images_in(d)]
    else:
        names = [d.name for d in _class_dirs(root)]
        samples = []
        for index, directory in enumerate(_class_dirs(root)):
            paths = _images_in(directory)
            order = np.random.default_rng([seed, index]).permutation(len(paths))
            n_val = int(round(len(paths) * val_fraction)) if len(paths) > 1 else 0
            chosen = order[:n_val] if split == "val" else order[n_val:]
            samples += [(paths[i], index) for i in sorted(chosen)]
    if not names:
        raise DataError(
            f"{root}: no class folders found (expected {root}/train/<class>/ and {root}/val/<class>/, or {root}/<class>/)"
        )
    if not samples:
        raise DataError(f"{root}: no images found for split {split!r} (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return [p for p, _ in samples], [label for _, label in samples], names
