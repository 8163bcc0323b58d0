"""The one preprocessing implementation (numpy + PIL, no torch).

Evaluation, export calibration/validation and the runtime all call `preprocess_image`,
so a model sees the same pixels in training-time evaluation and on the device.
It reproduces torchvision's eval transform on PIL images:
``Resize(resize) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps

from runtime.errors import DeployError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

ImageInput = Union[str, os.PathLike, Image.Image]


class ImageLoadError(DeployError, ValueError):
    """An input could not be read as an image (missing, truncated, not an image, too large)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw images become model input; travels with every checkpoint and artifact."""

    resize: int = 256  # shorter side after resizing
    crop: int = 224  # square center crop: the model's input size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(_INTERPOLATIONS)}")
        if self.resize < 1 or self.crop < 1:
            raise ValueError(f"resize and crop must be positive, got resize={self.resize} crop={self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @classmethod
    def for_image_size(cls, size: int, **kwargs: Any) -> "PreprocessSpec":
        """The torchvision convention: resize to size*256/224, crop `size` (224 -> 256/224)."""
        return cls(resize=int(round(size * 256 / 224)), crop=size, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k in ("mean", "std") else v) for k, v in data.items() if k in known})


def load_image(source: ImageInput) -> Image.Image:
    """Open `source` as an RGB PIL image with EXIF orientation applied.

    Any failure (missing file, not an image, truncated data, a decompression bomb)
    raises `ImageLoadError` naming the file.
    """
    name = getattr(source, "filename", None) or (os.fspath(source) if not isinstance(source, Image.Image) else "<image>")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, Image.Image):
                source.load()
                image = ImageOps.exif_transpose(source)
            else:
                with Image.open(os.fspath(source)) as opened:
                    opened.load()  # decode now, so truncated files fail here, not later
                    image = ImageOps.exif_transpose(opened)  # a rotated copy, detached from the file
            return to_rgb(image)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{name}: refused, image too large ({exc})") from None
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{name}: is a directory, not an image") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{name}: cannot read image ({exc})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. 16-bit and float greyscale are scaled to 8 bits, not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.uint16).astype(np.float32) / 257.0
        return Image.fromarray(np.round(pixels).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if pixels.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.round(pixels * 255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def resize_shorter_side(image: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """torchvision's Resize(int): the shorter side becomes `size`, the longer keeps the ratio (truncated)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_short, new_long = size, int(size * long / short)
    new_size = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize(new_size, _INTERPOLATIONS[interpolation])


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's CenterCrop: pads with black when the image is smaller than `size`."""
    width, height = image.size
    if width < size or height < size:
        padded = Image.new(image.mode, (max(width, size), max(height, size)))
        padded.paste(image, (max(size - width, 0) // 2, max(size - height, 0) // 2))
        image, (width, height) = padded, padded.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def normalize(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """RGB PIL image -> float32 array (3, H, W), scaled to [0, 1] then standardized."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    pixels = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_image(source: ImageInput, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Path or PIL image -> model input (3, crop, crop) float32."""
    spec = spec or PreprocessSpec()
    image = load_image(source)
    image = resize_shorter_side(image, spec.resize, spec.interpolation)
    image = center_crop(image, spec.crop)
    return normalize(image, spec)


def preprocess_batch(sources: list[ImageInput], spec: PreprocessSpec | None = None) -> np.ndarray:
    """Several images -> (N, 3, crop, crop) float32. Any unreadable image raises ImageLoadError."""
    return np.stack([preprocess_image(source, spec) for source in sources])
