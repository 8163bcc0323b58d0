"""Training augmentation with PIL and numpy (torchvision is not a dependency).

Evaluation never comes here: it uses runtime/preprocess.py, the one eval pipeline.
Randomness comes from an explicit numpy Generator, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from runtime.preprocess import INTERPOLATIONS, PreprocessSpec, normalize, to_rgb


def random_resized_crop(
    image: Image.Image,
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> Image.Image:
    """torchvision's RandomResizedCrop: a random area fraction and aspect ratio, resized to size x size."""
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            break
    else:  # fall back to a centre crop with the ratio clamped into range
        in_ratio = width / height
        w, h = (
            (width, int(round(width / ratio[0])))
            if in_ratio < ratio[0]
            else ((int(round(height * ratio[1])), height) if in_ratio > ratio[1] else (width, height))
        )
        top, left = (height - h) // 2, (width - w) // 2
    return image.resize((size, size), INTERPOLATIONS[interpolation], box=(left, top, left + w, top + h))


def random_crop_with_padding(image: Image.Image, size: int, rng: np.random.Generator, padding: int = 4) -> Image.Image:
    """The CIFAR recipe: zero-pad by `padding` on every side, take a random size x size crop."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    padded = Image.new("RGB", (size + 2 * padding, size + 2 * padding))
    padded.paste(image, (padding, padding))
    top, left = (int(v) for v in rng.integers(0, 2 * padding + 1, 2))
    return padded.crop((left, top, left + size, top + size))


class TrainTransform:
    """PIL image -> augmented, normalized float32 array (3, S, S).

    kind="resized": random resized crop + horizontal flip (ImageNet-style);
    kind="padded": 4-px padded random crop + horizontal flip (32x32 CIFAR-style);
    kind="flip": horizontal flip only (the synthetic set: its generator already randomizes size,
    position and rotation, and crops with another aspect ratio distort the very shapes that
    are the classes).
    """

    def __init__(
        self, spec: PreprocessSpec, *, kind: str = "resized", scale: tuple[float, float] = (0.08, 1.0)
    ) -> None:
        if kind not in ("resized", "padded", "flip"):
            raise ValueError(f"unknown augmentation {kind!r}")
        self.spec, self.kind, self.scale = spec, kind, scale

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        image = to_rgb(image)
        if self.kind == "padded":
            image = random_crop_with_padding(image, self.spec.crop, rng)
        elif self.kind == "resized":
            image = random_resized_crop(
                image, self.spec.crop, rng, scale=self.scale, interpolation=self.spec.interpolation
            )
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return normalize(image, self.spec)
