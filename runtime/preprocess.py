"""The one preprocessing implementation (numpy + PIL, no torch).

Evaluation, export calibration/validation and the runtime all call `preprocess_image`,
so a model sees the same pixels in training-time evaluation and on the device.
It reproduces torchvision's eval transform on PIL images:
``Resize(resize) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)``.
Reading a file into RGB (load_image, to_rgb, its memory budget) is runtime/decode.py,
re-exported here. By default (`PreprocessSpec.decode == "reduced"`) a large JPEG is decoded at the
size the resize needs (runtime/reduced_decode.py) and only the crop is resized; "exact" keeps the
torchvision transform's pixels bit for bit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from PIL import Image

from runtime.decode import MAX_DECODED_BYTES as MAX_DECODED_BYTES
from runtime.decode import ImageInput as ImageInput
from runtime.decode import ImageLoadError as ImageLoadError
from runtime.decode import decoded_bytes as decoded_bytes
from runtime.decode import load_image as load_image
from runtime.decode import source_name
from runtime.decode import to_rgb as to_rgb
from runtime.errors import MetadataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Bounds on preprocessing read from untrusted metadata, and on the memory one image may take.
MAX_CROP = 1024  # model input side; a batch of 32 such float32 inputs is 0.4 GB
MAX_RESIZE = 2048  # shorter side after resizing (>= crop; for_image_size(MAX_CROP) resizes to 1170)
# Pixels an image may have after resizing: Pillow's default decompression-bomb limit (0.25 GB
# of RGB). Pillow checks the decoded size only; a 1x200000 strip is 0.2 MP decoded but 13 GP
# once its shorter side becomes 256. A fixed number, not Image.MAX_IMAGE_PIXELS, which any
# code in the process may change or disable.
MAX_RESIZED_PIXELS = 89_478_485

# Image files, by suffix: what folder walks (alexnet-run, datasets, export --data) pick up. The
# formats Pillow decodes without plugins; anything else in a folder is skipped, not an error.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".bmp",
        ".dib",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".qoi",
        ".avif",
        ".jp2",
        ".j2k",
    }
)

DECODE_MODES = ("reduced", "exact")
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw images become model input; travels with every checkpoint and artifact.

    Every field is checked on construction (it often comes from an untrusted file): resize
    in 1..MAX_RESIZE, crop in 1..MAX_CROP and at most resize, three finite mean values and
    three finite positive std values, a known interpolation. A bad field raises MetadataError.
    """

    resize: int = 256  # shorter side after resizing
    crop: int = 224  # square center crop: the model's input size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    # How files are decoded (not stored with the model: a reader's choice): "reduced" decodes a large
    # JPEG at 1/2, 1/4 or 1/8 scale and crops before resizing (runtime/reduced_decode.py); "exact"
    # decodes every pixel and resizes the whole image, torchvision's pixels bit for bit.
    decode: str = "reduced"

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise MetadataError(
                f"unknown decode mode {short_repr(self.decode)}; choose one of {', '.join(DECODE_MODES)}"
            )
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise MetadataError(
                f"unknown interpolation {short_repr(self.interpolation)}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "resize", _bounded_int("resize", self.resize, MAX_RESIZE))
        object.__setattr__(self, "crop", _bounded_int("crop", self.crop, MAX_CROP))
        if self.crop > self.resize:
            raise MetadataError(f"crop {self.crop} is larger than resize {self.resize}; crop must be at most resize")
        object.__setattr__(self, "mean", _triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _triple("std", self.std, positive=True))

    @classmethod
    def for_image_size(cls, size: int, **kwargs: Any) -> PreprocessSpec:
        """The torchvision convention: resize to size*256/224, crop `size` (224 -> 256/224)."""
        return cls(resize=int(round(_bounded_int("image size", size, MAX_CROP) * 256 / 224)), crop=size, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["decode"]  # how this reader decodes, not part of the model's contract
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> PreprocessSpec:
        """From untrusted JSON: any bad or missing-typed field raises a one-line MetadataError."""
        if not isinstance(data, dict):
            raise MetadataError(f"preprocess must be an object, got {short_repr(data)}")
        known = {f.name for f in fields(cls)} - {"decode"}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except MetadataError as exc:
            raise MetadataError(f"preprocess: {exc}") from exc


def short_repr(value: Any, limit: int = 60) -> str:
    """repr, shortened: error messages quote untrusted values, which must stay one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounded_int(name: str, value: Any, maximum: int) -> int:
    # bool is an int subclass and "224" is not a number: both are refused, not coerced.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= maximum:
        raise MetadataError(f"{name} must be an integer from 1 to {maximum}, got {short_repr(value)}")
    return int(value)


def _triple(name: str, values: Any, *, positive: bool) -> tuple[float, float, float]:
    ok = (
        isinstance(values, (list, tuple))
        and len(values) == 3
        and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in values
        )
    )
    if not ok:
        what = "finite positive" if positive else "finite"
        raise MetadataError(f"{name} must be three {what} numbers (R, G, B), got {short_repr(values)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) once the shorter side is `size` and the longer keeps the ratio (truncated)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_shorter_side(
    image: Image.Image, size: int, interpolation: str = "bilinear", *, name: str = "<image>"
) -> Image.Image:
    """torchvision's Resize(int): the shorter side becomes `size`, the longer keeps the ratio (truncated).

    Refuses (ImageLoadError naming `name` and both sizes) a result above MAX_RESIZED_PIXELS,
    computed before any pixel is allocated.
    """
    width, height = image.size
    if min(width, height) == size:
        return image
    new_width, new_height = _check_resized(width, height, size, name)
    return image.resize((new_width, new_height), INTERPOLATIONS[interpolation])


def _check_resized(width: int, height: int, size: int, name: str) -> tuple[int, int]:
    """The resized (width, height); ImageLoadError if it is above MAX_RESIZED_PIXELS."""
    new_width, new_height = resized_size(width, height, size)
    if new_width * new_height > MAX_RESIZED_PIXELS:
        raise ImageLoadError(
            f"{name}: refused, a {width}x{height} image resized to shorter side {size} would be {new_width}x{new_height} "
            f"({new_width * new_height:,} pixels, more than the {MAX_RESIZED_PIXELS:,} allowed); its aspect ratio is too extreme"
        )
    return new_width, new_height


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
    # One float32 copy, already (3, H, W), then in place: the same float32 operations as
    # ((x / 255) - mean) / std on (H, W, 3), so the same bits, at a quarter of the time.
    pixels = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)
    pixels /= 255.0
    pixels -= np.asarray(spec.mean, np.float32)[:, None, None]
    pixels /= np.asarray(spec.std, np.float32)[:, None, None]
    return pixels


def denormalize(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """`normalize`'s inverse: float32 (3, H, W) model input -> uint8 (H, W, 3) viewable RGB.

    Rounds to the nearest 8-bit value, so an image that went through `normalize` comes back
    exactly; values outside the displayable range (augmentation, other specs) are clipped.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"denormalize expects a (3, H, W) array, got shape {array.shape}")
    pixels = array.transpose(1, 2, 0) * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def preprocess_image(source: ImageInput, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Path, encoded bytes or PIL image -> model input (3, crop, crop) float32, decoded as spec.decode says."""
    spec = spec or PreprocessSpec()
    if spec.decode == "reduced":
        return normalize(_reduced_crop(source, spec), spec)
    image = load_image(source)
    image = resize_shorter_side(image, spec.resize, spec.interpolation, name=source_name(source))
    image = center_crop(image, spec.crop)
    return normalize(image, spec)


def _reduced_crop(source: ImageInput, spec: PreprocessSpec) -> Image.Image:
    """The exact path's resized center crop, computed from a reduced decode and for the crop's pixels only.

    Pillow's `resize(box=...)` resamples the crop's region of the source with the filter the whole
    resize would use (reaching outside the box where the filter does), so this is the exact path's
    crop up to rounding; `reducing_gap` first averages whole blocks of a large non-JPEG image
    (Image.reduce), keeping REDUCE_BOUND source pixels per output pixel, as the JPEG reduction does.
    """
    from runtime.reduced_decode import REDUCE_BOUND, load_reduced

    reduced = load_reduced(source, math.ceil(REDUCE_BOUND * spec.resize))
    width, height = reduced.full_size
    new_width, new_height = _check_resized(width, height, spec.resize, source_name(source))
    if reduced.scale == 1 and min(width, height) == spec.resize:
        return center_crop(reduced.image, spec.crop)  # no resize: the exact path's pixels
    left, top = int(round((new_width - spec.crop) / 2.0)), int(round((new_height - spec.crop) / 2.0))
    # the crop's corners in full-size pixels, then in decoded ones (a decoded pixel covers `scale` of them)
    sx, sy = width / new_width / reduced.scale, height / new_height / reduced.scale
    box = (left * sx, top * sy, (left + spec.crop) * sx, (top + spec.crop) * sy)
    gap = None if spec.interpolation == "nearest" else REDUCE_BOUND
    return reduced.image.resize((spec.crop, spec.crop), INTERPOLATIONS[spec.interpolation], box=box, reducing_gap=gap)


def preprocess_batch(sources: list[ImageInput], spec: PreprocessSpec | None = None) -> np.ndarray:
    """Several images -> (N, 3, crop, crop) float32. Any unreadable image raises ImageLoadError."""
    return np.stack([preprocess_image(source, spec) for source in sources])
