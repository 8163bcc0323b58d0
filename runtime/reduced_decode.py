"""Decode an image at the size preprocessing needs, not at the size it was taken.

A 12-megapixel photo (4032x3024) is resized to a shorter side of 256: decoding every one of its
pixels (~50 ms here) to average 140 of them into each output pixel wastes most of the work. A JPEG
can be decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain (each 8x8 block's low frequencies
only), at a fraction of the cost; `load_reduced` takes the largest such reduction that keeps the
shorter side at least `min_side` pixels, so that the final resize still averages over
REDUCE_BOUND source pixels per output pixel (the bound `benchmarks.decode_quality` measured).

JPEGs in RGB or greyscale are decoded by simplejpeg (libjpeg-turbo, the same pixels as Pillow's
decoder, bit for bit, with less overhead); other JPEGs by Pillow's `draft`; other formats are
decoded whole (preprocessing then reduces them with `Image.reduce`, see runtime/preprocess.py).
Every check of `load_image` applies: a regular file, the decoding budget on the full size, the
EXIF orientation, one-line ImageLoadErrors.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from PIL import Image

from runtime.decode import (
    EncodedImage,
    ImageInput,
    ImageLoadError,
    check_budget,
    decode_pixels,
    load_image,
    opened_image,
    read_errors,
    source_name,
    to_rgb,
    transpose_method,
    upright_rgb,
)

# The shorter side a reduced decode keeps, in multiples of the resize target: 2 keeps two source pixels
# (or more) per output pixel for the final bilinear resize, which then still filters what the DCT
# reduction let through. Measured with `python -m benchmarks.decode_quality compare` (README, "Camera
# photos"): at 1.5 a 1024x768 photo halved then resized by 1.5 moved inputs by up to 16 levels of 255;
# at 2, by 5 at most on every size, and the predictions by half a probability point.
REDUCE_BOUND = 2.0
_JPEG_SCALES = (8, 4, 2)  # libjpeg's fast power-of-two reductions, largest first
_SWAPS_SIDES = frozenset(
    {Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270}
)


@dataclass(frozen=True)
class Reduced:
    """A decoded RGB image, upright, and how it maps onto the full-size upright image."""

    image: Image.Image
    full_size: tuple[int, int]  # (width, height) of the full-size image, upright
    scale: int  # full-size pixels per decoded pixel along each side (1, 2, 4 or 8)


def reduction(width: int, height: int, min_side: int) -> int:
    """The largest of 8, 4, 2 (else 1) that leaves the shorter side at least `min_side` pixels."""
    shorter = min(width, height)
    return next((s for s in _JPEG_SCALES if math.ceil(shorter / s) >= min_side), 1)


def load_reduced(source: ImageInput, min_side: int) -> Reduced:
    """`source` as RGB, upright, decoded at a reduced size whose shorter side is at least `min_side`
    (a JPEG; other images at full size)."""
    if isinstance(source, Image.Image):
        image = load_image(source)
        return Reduced(image, image.size, 1)
    name = source_name(source)
    with read_errors(name), opened_image(source) as opened:
        check_budget(opened, name)  # on the full size: what the exact path would take at most
        method = transpose_method(opened)
        width, height = opened.size
        full = (height, width) if method in _SWAPS_SIDES else (width, height)
        scale = reduction(width, height, min_side) if opened.format in ("JPEG", "MPO") else 1
        if opened.format in ("JPEG", "MPO") and opened.mode in ("RGB", "L"):
            image = _simplejpeg(opened, source, scale, name)
            if image is not None:
                return Reduced(upright_rgb(image, method), full, scale)
        if scale > 1:
            opened.draft(opened.mode, (width // scale, height // scale))  # a CMYK JPEG, say
            if math.ceil(width / scale) != opened.size[0]:
                raise ImageLoadError(f"{name}: the JPEG decoder did not reduce it as asked")
        decode_pixels(opened)
        turned = opened.transpose(method) if method is not None else opened
        rgb = to_rgb(turned)
        return Reduced(rgb if rgb is not opened else opened.copy(), full, scale)


def _simplejpeg(opened: Image.Image, source: ImageInput, scale: int, name: str) -> Image.Image | None:
    """The JPEG decoded by simplejpeg at 1/scale (RGB or L), or None where simplejpeg is not installed."""
    try:
        import simplejpeg
    except ImportError:  # an optional speed-up: Pillow decodes the same pixels
        return None
    if isinstance(source, (bytes, EncodedImage)):
        data = source if isinstance(source, bytes) else source.data
    else:
        data = _file_bytes(opened, name)
    width, height = opened.size
    want = (math.ceil(width / scale), math.ceil(height / scale))
    colorspace = "RGB" if opened.mode == "RGB" else "GRAY"
    # min sizes pick exactly 1/scale: libjpeg's next larger reduction would go below them
    array = simplejpeg.decode_jpeg(data, colorspace, min_height=want[1], min_width=want[0])
    if array.shape[1::-1] != want:
        raise ImageLoadError(
            f"{name}: the JPEG decoder gave {array.shape[1]}x{array.shape[0]}, not {want[0]}x{want[1]}"
        )
    return Image.fromarray(array if colorspace == "RGB" else array[:, :, 0], opened.mode)


def _file_bytes(opened: Image.Image, name: str) -> bytes:
    """The whole file behind an opened JPEG, refused above what a JPEG of its pixels can take
    (check_budget bounds the pixels, not the bytes)."""
    handle = opened.fp
    width, height = opened.size
    limit = 64 * width * height + (1 << 20)  # far above any JPEG's bytes per pixel (~0.1 to 3)
    size = os.fstat(handle.fileno()).st_size  # a regular file (open_regular): its size is what read() gets
    if size > limit:
        raise ImageLoadError(f"{name}: refused, a file larger than a {width}x{height} JPEG can be ({limit:,} bytes)")
    handle.seek(0)
    return handle.read(size)
