"""alexnet-serve's tensors on the Open Inference Protocol (KServe v2), and their checks.

One request carries one input, either
  image  BYTES [n] (or [n, 1])     encoded image files; the server decodes and preprocesses them
                                   with the artifact's own spec (runtime.preprocess). Each element
                                   is the file's raw bytes (the binary data extension, gRPC, or
                                   Triton-style JSON strings) or, this server's extension for JSON,
                                   the file base64-encoded (`image_file` tells which), or
  input  FP32  [n, 3, H, W]        tensors already preprocessed (what Triton takes), named by the
                                   artifact's metadata (input_name).
and gets back, per image, the top-k classes best first (k: the request parameter `top_k`, default 5):
  labels BYTES [n, k]   indices INT64 [n, k]   probabilities FP32 [n, k]  (softmax over all classes)
  logits FP32 [n, classes]   only when asked for: as a requested output, or parameter logits=true.

Framework-free (numpy only): the server's model class calls these and turns RequestError into the
protocol's "invalid argument" (HTTP 400, gRPC INVALID_ARGUMENT); the client shares the names.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import DeployError
from runtime.metadata import ArtifactMetadata
from runtime.predictor import softmax

# A model name is a URL path segment (/v2/models/NAME) and a Triton repository's folder name:
# nothing that needs quoting, no path separator, no leading dot (hidden, and "." / "..").
MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MODEL_NAME_RULE = "1-128 letters, digits, '_', '-' or '.', not starting with '.'"
IMAGE_INPUT = "image"
LABELS, INDICES, PROBABILITIES, LOGITS = "labels", "indices", "probabilities", "logits"
OUTPUTS = (LABELS, INDICES, PROBABILITIES, LOGITS)
TOP_K, WANT_LOGITS = "top_k", "logits"  # request parameters
DEFAULT_TOP_K = 5
MAX_IMAGE_BYTES = 32 << 20  # one encoded image; its decoded size is bounded by runtime.preprocess
MAX_BASE64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)  # base64 text of at most MAX_IMAGE_BYTES
BINARY_HEADER = "Inference-Header-Content-Length"  # the binary data extension's request header
RAW, BASE64, UNKNOWN = "raw", "base64", "unknown"  # how an image element was sent (image_file)
# Signatures of the common image files. Each holds a byte base64 text cannot (NUL, >= 0x80,
# whitespace) or is never the start of a base64-encoded image, so no base64 image is taken for raw.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


class RequestError(DeployError, ValueError):
    """The request does not fit the model: wrong input name, datatype, shape, parameter or data."""


@dataclass(frozen=True)
class ParsedRequest:
    images: list[bytes] | np.ndarray  # encoded files, or preprocessed (n, 3, H, W) float32
    top_k: int
    logits: bool

    @property
    def count(self) -> int:
        return len(self.images)


def input_types(metadata: ArtifactMetadata) -> list[dict[str, Any]]:
    """The model-metadata `inputs`: both accepted forms (-1: any batch)."""
    return [
        {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
        {"name": metadata.input_name, "datatype": "FP32", "shape": [-1, *metadata.input_shape[1:]]},
    ]


def output_types(metadata: ArtifactMetadata) -> list[dict[str, Any]]:
    return [
        {"name": LABELS, "datatype": "BYTES", "shape": [-1, -1]},
        {"name": INDICES, "datatype": "INT64", "shape": [-1, -1]},
        {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, -1]},
        {"name": LOGITS, "datatype": "FP32", "shape": [-1, metadata.num_classes]},
    ]


def parameter_value(value: Any) -> Any:
    """A request parameter as a Python value: REST sends JSON values, gRPC InferParameter messages."""
    if hasattr(value, "WhichOneof"):
        choice = value.WhichOneof("parameter_choice")
        return getattr(value, choice) if choice else None
    return value


def parse_request(
    inputs: list[Any], parameters: Mapping[str, Any] | None, metadata: ArtifactMetadata, max_images: int
) -> ParsedRequest:
    """Check a request's inputs (objects with name, datatype, shape, as_numpy()) and parameters."""
    params = {key: parameter_value(value) for key, value in (parameters or {}).items()}
    top_k = params.get(TOP_K, DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise RequestError(f"parameter {TOP_K} must be a positive integer, got {top_k!r}")
    top_k = min(top_k, metadata.num_classes)  # as alexnet-run's --topk: every class, best first
    want_logits = params.get(WANT_LOGITS, False)
    if not isinstance(want_logits, bool):
        raise RequestError(f"parameter {WANT_LOGITS} must be true or false, got {want_logits!r}")
    if len(inputs) != 1:
        raise RequestError(
            f"expected one input ({IMAGE_INPUT!r} BYTES or {metadata.input_name!r} FP32), got {len(inputs)}"
        )
    tensor = inputs[0]
    shape = [int(d) for d in tensor.shape]
    count = shape[0] if shape else 0
    if count == 0:
        raise RequestError(f"input {tensor.name!r} is an empty batch (shape {shape}): send at least one image")
    if count > max_images:
        raise RequestError(f"input {tensor.name!r} has {count} images, more than the {max_images} one request may")
    if tensor.name == IMAGE_INPUT:
        images: list[bytes] | np.ndarray = _encoded_images(tensor, shape)
    elif tensor.name == metadata.input_name:
        images = _preprocessed(tensor, shape, metadata)
    else:
        raise RequestError(
            f"unknown input {tensor.name!r}; this model takes {IMAGE_INPUT!r} (BYTES, encoded images) "
            f"or {metadata.input_name!r} (FP32, preprocessed)"
        )
    return ParsedRequest(images, top_k, want_logits)


def _encoded_images(tensor: Any, shape: list[int]) -> list[bytes]:
    if tensor.datatype != "BYTES":
        raise RequestError(f"input {IMAGE_INPUT!r} must be BYTES (encoded image files), got {tensor.datatype}")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise RequestError(f"input {IMAGE_INPUT!r} must have shape [n] or [n, 1], got {shape}")
    values = _as_numpy(tensor).reshape(-1)
    images = []
    for i, value in enumerate(values):
        # only bytes or text: bytes(10**15) would allocate a petabyte of zeros, bytes({...}) raise TypeError
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        else:
            raise RequestError(f"image {i}: expected the bytes of an encoded image file, got {type(value).__name__}")
        # an image file at most MAX_IMAGE_BYTES, base64 text 4/3 of that (checked again once decoded: image_file)
        if len(data) > (MAX_IMAGE_BYTES if looks_like_image(data) else MAX_BASE64_CHARS):
            raise RequestError(f"image {i} is {len(data):,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed")
        images.append(data)
    return images


def looks_like_image(data: bytes) -> bool:
    """Whether `data` starts as a JPEG, PNG, GIF, TIFF, BMP or WebP file does (its header alone)."""
    if data.startswith(_SIGNATURES):
        return True
    if data.startswith(b"BM") and len(data) >= 18:  # then the DIB header's size, which holds NULs
        return int.from_bytes(data[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    return data.startswith(b"RIFF") and data[8:12] == b"WEBP"


def image_file(data: bytes) -> tuple[bytes, str]:
    """An `image` element -> (the encoded image file, how it came: RAW, BASE64 or UNKNOWN).

    Raw when it looks like an image file; else base64 when it is strictly that (the alphabet and
    padding, nothing else: no raw image file is); else raw as UNKNOWN, for Pillow to tell (formats
    without a signature here). The caller bounded the text (MAX_BASE64_CHARS) before decoding;
    a file, raw or decoded, is at most MAX_IMAGE_BYTES (RequestError past it).
    """
    if looks_like_image(data):
        return _bounded(data), RAW
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return _bounded(data), UNKNOWN
    return _bounded(decoded), BASE64


def _bounded(data: bytes) -> bytes:
    if len(data) > MAX_IMAGE_BYTES:
        raise RequestError(f"{len(data):,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed")
    return data


def accepted_forms(metadata: ArtifactMetadata) -> str:
    """What an image input may be, in one line (for errors about one that is none of them)."""
    shape = ", ".join(map(str, metadata.input_shape[1:]))
    return (
        f"accepted: raw image bytes via the binary data extension ({BINARY_HEADER}), base64 image bytes "
        f"in the JSON BYTES input {IMAGE_INPUT!r}, or an FP32 tensor [n, {shape}] as input {metadata.input_name!r}"
    )


def _preprocessed(tensor: Any, shape: list[int], metadata: ArtifactMetadata) -> np.ndarray:
    expected = [shape[0], *metadata.input_shape[1:]]
    if tensor.datatype != "FP32":
        raise RequestError(f"input {tensor.name!r} must be FP32, got {tensor.datatype}")
    if shape != expected:
        raise RequestError(
            f"input {tensor.name!r} must have shape [n, {', '.join(map(str, expected[1:]))}], got {shape}"
        )
    return np.ascontiguousarray(_as_numpy(tensor), dtype=np.float32)


def _as_numpy(tensor: Any) -> np.ndarray:
    try:
        return tensor.as_numpy()
    except Exception as exc:  # the data does not fill the shape it claims, or is not of its datatype
        raise RequestError(f"input {tensor.name!r}: its data does not match its shape and datatype ({exc})") from exc


def output_arrays(logits: np.ndarray, request: ParsedRequest, metadata: ArtifactMetadata) -> dict[str, np.ndarray]:
    """(n, classes) logits -> the response tensors, by name (logits included only when asked for)."""
    if not np.isfinite(logits).all():
        raise RequestError("the model's output is not finite (NaN or infinity) for this input")
    probs = softmax(logits)
    top = np.argsort(-probs, axis=1, kind="stable")[:, : request.top_k]  # (n, k), the runtime's order
    names = _encoded_names(metadata.class_names)
    arrays = {
        LABELS: names[top],
        INDICES: top.astype(np.int64),
        PROBABILITIES: np.take_along_axis(probs, top, axis=1).astype(np.float32),
    }
    if request.logits:
        arrays[LOGITS] = logits.astype(np.float32)
    return arrays


@functools.lru_cache(maxsize=8)
def _encoded_names(names: tuple[str, ...]) -> np.ndarray:
    """The class names as a BYTES array, made once per model (not per request: ImageNet has 1000)."""
    return np.array([name.encode("utf-8") for name in names], dtype=object)
