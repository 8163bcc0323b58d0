"""Training augmentation with PIL and numpy (torchvision is not a dependency).

Evaluation never comes here: it uses runtime/preprocess.py, the one eval pipeline.
Randomness comes from an explicit numpy Generator, so a run is reproducible from its seed.

`--augment` picks the geometry (AUGMENTATIONS); the horizontal flip is its own switch (`--no-flip`),
since mirrored digits or text are other classes while mirrored photos are not.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from runtime.preprocess import INTERPOLATIONS, PreprocessSpec, center_crop, normalize, resize_shorter_side, to_rgb

# name -> what it does (the CLI's help and alexnet-info's line are made from this table)
AUGMENTATIONS = {
    "none": "no crop: the eval resize and centre crop",
    "light": "a random crop of the image padded by 1/8 of its side (4 px at 32, the CIFAR recipe)",
    "standard": "a random resized crop of 8-100% of the area, aspect 3/4 to 4/3 (torchvision's ImageNet recipe)",
    "paper": "a random crop of the image resized to 256/224 of the input, and PCA lighting noise (Krizhevsky 2012)",
}
# Inputs at most this size get "light" by default: at 32 px a crop of 8% of the area is a few pixels.
SMALL_INPUT = 64
IMAGENET_CROP_SCALE = (0.08, 1.0)  # torchvision's RandomResizedCrop default
# The paper's "fancy PCA" lighting: the ImageNet RGB covariance's eigenvalues and eigenvectors (on [0, 1]
# pixels, as fb.resnet.torch publishes them), scaled by alpha ~ N(0, 0.1) per image.
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]], np.float32)
PCA_ALPHA_STD = 0.1


def default_augment(data_kind: str, size: int) -> str:
    """The augmentation a dataset gets when `--augment` is not given: the synthetic shapes are already
    randomized by their generator, CIFAR-10 and other small inputs get padded crops, photos the standard."""
    if data_kind == "synthetic":
        return "none"
    return "light" if data_kind == "cifar10" or size <= SMALL_INPUT else "standard"


def describe_augment(augment: str, flip: bool) -> str:
    """One line for logs and alexnet-info: "light (a random crop ...), horizontal flip"."""
    return f"{augment} ({AUGMENTATIONS[augment]}), {'horizontal flip' if flip else 'no flip'}"


def random_resized_crop(
    image: Image.Image,
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = IMAGENET_CROP_SCALE,
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


def random_crop_of_resized(image: Image.Image, size: int, rng: np.random.Generator, interpolation: str) -> Image.Image:
    """The paper's crop: the shorter side resized to size * 256/224 (256 for 224), a random size x size window."""
    image = resize_shorter_side(image, round(size * 256 / 224), interpolation)
    width, height = image.size
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return image.crop((left, top, left + size, top + size))


def pca_lighting(pixels: np.ndarray, spec: PreprocessSpec, rng: np.random.Generator) -> np.ndarray:
    """Add the paper's per-image RGB shift along the principal components, to normalized (3, S, S) pixels."""
    shift = PCA_EIGVEC @ (rng.normal(0.0, PCA_ALPHA_STD, 3).astype(np.float32) * PCA_EIGVAL)  # on [0, 1] pixels
    pixels += (shift / np.asarray(spec.std, np.float32))[:, None, None]
    return pixels


class TrainTransform:
    """PIL image -> augmented, normalized float32 array (3, S, S): `augment` (AUGMENTATIONS), then the flip."""

    def __init__(self, spec: PreprocessSpec, *, augment: str = "standard", flip: bool = True) -> None:
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
        self.spec, self.augment, self.flip = spec, augment, flip

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        image, size = to_rgb(image), self.spec.crop
        if self.augment == "light":
            image = random_crop_with_padding(image, size, rng, padding=max(1, size // 8))
        elif self.augment == "standard":
            image = random_resized_crop(image, size, rng, interpolation=self.spec.interpolation)
        elif self.augment == "paper":
            image = random_crop_of_resized(image, size, rng, self.spec.interpolation)
        else:  # none: the eval geometry (a no-op on an image already size x size)
            image = center_crop(resize_shorter_side(image, self.spec.resize, self.spec.interpolation), size)
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = normalize(image, self.spec)
        return pca_lighting(pixels, self.spec, rng) if self.augment == "paper" else pixels
