"""Image file -> RGB PIL image, within a memory budget checked before any pixel is decoded.

`Image.open` only reads the header, so the mode and size, hence what decoding will take, are
known first: `decoded_bytes` says it, `load_image` refuses an image whose figure is over
MAX_DECODED_BYTES, then decodes. 16-bit, 32-bit and float greyscale are converted a stripe of
rows at a time: a float64 copy of a whole 9400x9400 image would be 700 MB, many such copies
several GB from one 630 KB deflate-compressed TIFF.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image

from runtime.errors import DeployError
from runtime.fileio import SpecialFileError, open_regular

# Peak memory one image may take to decode and convert to RGB (`decoded_bytes`). 512 MiB is what
# a 64 MP (8192x8192) image of any 8-bit mode takes from PNG, TIFF or 4:2:0 JPEG, rotated by its
# EXIF orientation or converted from CMYK, RGBA, 16-bit or float (two 4-byte-a-pixel copies):
# photos are rarely larger; WebP and single-tile JPEG 2000, whose decoders hold 3-5 times the
# image, get ~25 MP; the 9400x9400 float TIFF of issue 26 (707 MB) is refused.
MAX_DECODED_BYTES = 512 << 20
_STRIPE_PIXELS = 1 << 18  # greyscale pixels converted at a time: a 2 MB float64 stripe
_STRIPE_BYTES = 24 * _STRIPE_PIXELS  # a stripe's copies: crop, its bytes, float64, uint8, its RGB
# Formats whose decoders hold a few rows beside the image, not a copy of it.
_ROW_DECODERS = frozenset({"PNG", "GIF", "BMP", "DIB", "PPM", "TGA", "PCX", "SGI", "ICO"})
# Bytes a pixel for other decoders: libwebp's canvases (12 measured), libavif's YUV planes (6),
# Pillow's QOI decoder (3); for the formats not measured, a guess.
_OTHER_DECODER_BYTES = 16
_DEEP_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_TRANSPOSES = {  # EXIF orientation -> what makes the image upright (1: it is)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class EncodedImage:
    """An image file's contents read elsewhere (by Ray Data, from a request) and the name its
    errors give it (its path or URI): decoded as the file itself would be."""

    data: bytes
    name: str


# bytes: an encoded image file's contents (named "<N bytes>" in errors)
ImageInput = str | os.PathLike | Image.Image | bytes | EncodedImage


class ImageLoadError(DeployError, ValueError):
    """An input could not be read as an image (missing, truncated, not an image, too large)."""


def decoded_bytes(source: str | os.PathLike | bytes | EncodedImage) -> int:
    """Peak memory, in bytes, `load_image(source)` takes for the pixels of an image file (a path
    or the file's bytes), from its header alone.

    Nothing is decoded: a server can reserve this much before decoding. Raises ImageLoadError
    for what is not an image (as `load_image` would). The largest of: the decoded image in
    Pillow's layout (4 bytes a pixel for RGB, every other multi-band mode, I and F; 2 for 16-bit;
    1 for L, P and 1) plus what its decoder holds beside it (libtiff's strip, libjpeg's DCT
    coefficients, libwebp's and openjpeg's buffers: measured with Pillow 13, a guess for formats
    not measured); two copies while an EXIF orientation is applied; the decoded image and its RGB
    conversion. Preprocessing then adds the resized image (at most MAX_RESIZED_PIXELS * 4 bytes).
    """
    with read_errors(source_name(source)), opened_image(source) as image:
        return _peak_bytes(image)


def load_image(source: ImageInput) -> Image.Image:
    """Open `source` (a path, a PIL image, or an encoded file's bytes) as RGB, EXIF orientation applied.

    Any failure (missing file, not a regular file, not an image, truncated data, a
    decompression bomb, more than MAX_DECODED_BYTES to decode) raises `ImageLoadError` naming
    the file; Pillow's warnings about damaged metadata are not printed.
    """
    name = source_name(source)
    with read_errors(name):
        if isinstance(source, Image.Image):  # decoded already: the caller's, left as it was
            source.load()
            method = transpose_method(source)
            rgb = to_rgb(source.transpose(method) if method is not None else source)
            return source.copy() if rgb is source else rgb
        with opened_image(source) as opened:
            check_budget(opened, name)
            decode_pixels(opened)
            # After decoding (a PNG's eXIf may follow its pixels), before converting (while a
            # pixel is smallest); each copy closed once the next is made, not when the caller
            # lets go of the result.
            method = transpose_method(opened)
            return upright_rgb(opened, method)


def decode_pixels(image: Image.Image) -> None:
    """Decode an opened image now, so truncated files fail here, not later; outside header_warnings,
    so that threads decode in parallel."""
    if image.format == "TIFF":
        transpose_method(image)  # TIFF's load() ends by reading its EXIF: read (and cached) here
    image.load()


def upright_rgb(image: Image.Image, method: Image.Transpose | None) -> Image.Image:
    """A decoded image turned upright by `method` and converted to RGB; each intermediate copy closed
    once the next is made, not when the caller lets go of the result."""
    turned = image.transpose(method) if method is not None else image
    if turned is not image:
        image.close()
    rgb = to_rgb(turned)
    if rgb is not turned:
        turned.close()
    return rgb


def check_budget(image: Image.Image, name: str) -> None:
    """ImageLoadError unless the opened (not yet decoded) image fits MAX_DECODED_BYTES."""
    peak = _peak_bytes(image)
    if peak > MAX_DECODED_BYTES:
        width, height = image.size
        raise ImageLoadError(
            f"{name}: refused, a {width}x{height} {image.mode} image takes {peak / 2**20:,.0f} MiB "
            f"to decode, more than the {MAX_DECODED_BYTES / 2**20:,.0f} MiB allowed"
        )


def source_name(source: ImageInput) -> str:
    """How error messages name `source`."""
    if isinstance(source, Image.Image):
        return getattr(source, "filename", None) or "<image>"
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, EncodedImage):
        return source.name
    return os.fspath(source)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. 16-bit and float greyscale are scaled to 8 bits, not clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in _DEEP_GREY:
        return _deep_grey_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _deep_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit: v / 257; 32-bit and float: v * 255 / (65535 if any v > 255 else 255); rounded and
    clipped, NaN black. Computed on stripes of rows, written into the RGB result."""
    width, height = image.size
    rows = max(1, _STRIPE_PIXELS // max(width, 1))
    boxes = [(0, top, width, min(top + rows, height)) for top in range(0, height, rows)]
    if image.mode.startswith("I;16"):
        scale = _scale_16bit
    else:
        # fmax ignores NaN, which says nothing about the range
        top_value = max((np.fmax.reduce(np.asarray(image.crop(box)), axis=None, initial=0) for box in boxes), default=0)
        scale = functools.partial(_scale_wide, full=65535.0 if top_value > 255 else 255.0)
    rgb = Image.new("RGB", image.size)
    for box in boxes:
        rgb.paste(Image.fromarray(scale(np.asarray(image.crop(box))), "L"), box[:2])
    return rgb


def _scale_16bit(pixels: np.ndarray) -> np.ndarray:
    return np.round(pixels.astype(np.float32) / 257.0).astype(np.uint8)


def _scale_wide(pixels: np.ndarray, full: float) -> np.ndarray:
    scaled = pixels.astype(np.float64)
    scaled *= 255.0
    scaled /= full
    np.round(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    scaled[np.isnan(scaled)] = 0  # casting NaN to uint8 is undefined (and warns)
    return scaled.astype(np.uint8)


def _peak_bytes(image: Image.Image) -> int:
    """`decoded_bytes` of an opened, maybe not yet decoded, image: the largest of its three steps."""
    width, height = image.size
    pixels = width * height
    decoded = pixels * _pixel_bytes(image.mode)
    decoding = decoded + _decoder_bytes(image)
    # exif_transpose holds two copies; only RGB can need more for it than for converting (depth <= 4)
    rotating = 2 * decoded if image.mode == "RGB" and _may_rotate(image) else 0
    converting = 0
    if image.mode in _DEEP_GREY:
        converting = decoded + 4 * pixels + _STRIPE_BYTES
    elif image.mode != "RGB":  # a 4-byte RGB copy (and an RGBA one first for a palette with transparency)
        converting = decoded + (8 if image.mode == "P" and "transparency" in image.info else 4) * pixels
    return max(decoding, rotating, converting)


def _pixel_bytes(mode: str) -> int:
    """Bytes a pixel takes in Pillow's memory (every mode of 3 or 4 bands is stored in 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _may_rotate(image: Image.Image) -> bool:
    """Whether the image may carry an EXIF or XMP orientation, before decoding it."""
    if image.format in ("PNG", "TIFF"):
        # a PNG's eXIf and XMP may follow the pixels; a TIFF's EXIF is read from the file: assume so
        return True
    return transpose_method(image) is not None


def transpose_method(image: Image.Image) -> Image.Transpose | None:
    """What makes the image upright, from its EXIF (or XMP) orientation. Not ImageOps.exif_transpose,
    which also rewrites the EXIF, and fails on a garbled one (struct.error, TypeError)."""
    with header_warnings():
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return _TRANSPOSES.get(orientation) if isinstance(orientation, int) else None


def _decoder_bytes(image: Image.Image) -> int:
    """What the decoder holds beside the image while decoding (measured with Pillow 13)."""
    width, height = image.size
    if image.format in _ROW_DECODERS:
        return 0
    if image.format in ("JPEG", "MPO"):
        # libjpeg keeps every DCT coefficient (2 bytes) of a progressive or multi-scan file, which
        # only the scans after the header tell: counted always, per sample after chroma subsampling
        layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
        h_max, v_max = max(max(h, 1) for _, h, _, _ in layers), max(max(v, 1) for _, _, v, _ in layers)
        return (width + 32) * (height + 32) * 2 * sum(h * v for _, h, v, _ in layers) // (h_max * v_max)
    if image.format == "JPEG2000":  # openjpeg's int32 plane per band, and its output, for a single-tile file
        return (4 * len(image.getbands()) + 6) * width * height
    if image.format != "TIFF":
        return _OTHER_DECODER_BYTES * width * height
    tags = getattr(image, "tag_v2", {})  # libtiff reads a whole strip (or tile) first, in the file's layout
    rows = min(_tag_int(tags, 278, height), height)  # RowsPerStrip
    if 322 in tags and 323 in tags:  # TileWidth, TileLength
        width, rows = _tag_int(tags, 322, width), _tag_int(tags, 323, rows)
    bits = tags.get(258, 8)  # BitsPerSample, one value per sample: 64-bit floats take 8 bytes in the file
    file_depth = -(-sum(bits if isinstance(bits, tuple) else (bits,)) // 8) if _all_ints(bits) else 0
    return width * rows * max(_pixel_bytes(image.mode), file_depth)


def _tag_int(tags: object, tag: int, default: int) -> int:
    value = tags.get(tag, default)  # type: ignore[attr-defined]
    return value if isinstance(value, int) and value > 0 else default


def _all_ints(bits: object) -> bool:
    return all(isinstance(b, int) and 0 <= b <= 64 for b in (bits if isinstance(bits, tuple) else (bits,)))


@contextlib.contextmanager
def opened_image(source: str | os.PathLike | bytes | EncodedImage) -> Iterator[Image.Image]:
    """The image file opened by Pillow (its header read, nothing decoded); a path must be a regular file."""
    if isinstance(source, (bytes, EncodedImage)):  # a request body: the same decoder, bomb checks and errors
        with header_warnings():
            image = Image.open(io.BytesIO(source if isinstance(source, bytes) else source.data))
        with image:
            yield image
    else:
        with open_regular(source) as handle:
            with header_warnings():
                image = Image.open(handle)
            with image:
                yield image


# warnings.catch_warnings swaps the process-wide filter list (before Python 3.14): two threads in it at
# once can restore each other's filters and leave ours in place. Ours are only set around reading a
# header (fast), one thread at a time; decoding, the slow part, runs outside and in parallel.
_WARNINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def header_warnings() -> Iterator[None]:
    """Around Pillow's header and EXIF parsing: its warnings about damaged metadata ("Possibly corrupt
    EXIF data", "Metadata Warning") silenced, since Pillow skips what it cannot read and they would
    only print file paths before our one-line error; its decompression-bomb warning made an error
    (Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both are refused). Only
    Pillow's warnings, and only in this block."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


@contextlib.contextmanager
def read_errors(name: str) -> Iterator[None]:
    """Pillow's (and the JPEG decoder's) failures as one-line ImageLoadErrors naming `name`."""
    try:
        yield
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{name}: refused, image too large ({exc})") from exc
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{name}: is a directory, not an image") from None
    except SpecialFileError as exc:
        raise ImageLoadError(f"{exc}; not read") from exc
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{name}: cannot read image ({exc})") from exc
