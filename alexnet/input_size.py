"""The model input size a run uses when `--image-size` is not given, and a notice when a folder's
images are much smaller than it (a 32-pixel digit blown up to 224 costs 49x the pixels, teaches nothing).

No torch: alexnet-data, alexnet-viz and alexnet-train all choose sizes here.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from PIL import Image

# The input size each variant was designed for; alexnet/model.py (which imports torch) builds them.
VARIANT_IMAGE_SIZE = {"torchvision": 224, "paper": 227, "cifar": 32}
VARIANTS = tuple(VARIANT_IMAGE_SIZE)  # the AlexNet variants (alexnet/model.py builds them)
# Data sets with a size of their own: the synthetic shapes' default rendering, CIFAR-10's and STL-10's pixels.
NATIVE_IMAGE_SIZE = {"synthetic": 64, "cifar10": 32, "stl10": 96}
NOTICE_SAMPLE = 16  # image headers read for the notice
MUCH_SMALLER = 2  # the notice appears when the images' shorter side is at most 1/2 of the input


def data_kind(data: str) -> str:
    """ "synthetic", "cifar10", "stl10" or "folder" (DATA as alexnet-train takes it)."""
    if data == "synthetic":
        return "synthetic"
    return next((kind for kind in ("cifar10", "stl10") if data.startswith(kind + ":")), "folder")


def default_image_size(data: str, variant: str = "torchvision") -> int:
    """The variant's size (torchvision 224, paper 227, cifar 32); a data set with a size of its own
    (synthetic 64, CIFAR-10 32, STL-10 96) keeps it, unless the variant's is smaller."""
    size = VARIANT_IMAGE_SIZE[variant]
    native = NATIVE_IMAGE_SIZE.get(data_kind(data))
    return size if native is None else min(native, size)


def small_images_notice(paths: list[str | os.PathLike], size: int, where: str) -> str | None:
    """One line when the images (a sample of `paths`' headers) are much smaller than `size`, else None."""
    if not paths:
        return None
    step = max(1, len(paths) // NOTICE_SAMPLE)
    sizes = [s for s in map(_header_size, list(paths)[::step][:NOTICE_SAMPLE]) if s is not None]
    if not sizes:
        return None
    width = int(statistics.median(w for w, _ in sizes))
    height = int(statistics.median(h for _, h in sizes))
    if min(width, height) * MUCH_SMALLER > size:
        return None
    fit = "--variant cifar (a 32-pixel network)" if min(width, height) <= 48 else f"--image-size {min(width, height)}"
    return (
        f"notice: the images in {where} are about {width}x{height} pixels (median of {len(sizes)}), much smaller "
        f"than the {size}x{size} input in use; {fit} fits them"
    )


def _header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file's header, without decoding; None for a file that is not an image."""
    try:
        if not Path(path).is_file():
            return None
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # the loader reports such files, with their names, when it reaches them
