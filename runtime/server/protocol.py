"""alexnet-serve's tensors on the Open Inference Protocol (KServe v2), and their checks.

One request carries one input, either
  image  BYTES [n] (or [n, 1])     encoded image files; the server decodes and preprocesses them
                                   with the artifact's own spec (runtime.preprocess), or
  input  FP32  [n, 3, H, W]        tensors already preprocessed (what Triton takes), named by the
                                   artifact's metadata (input_name).
and gets back, per image, the top-k classes best first (k: the request parameter `top_k`, default 5):
  labels BYTES [n, k]   indices INT64 [n, k]   probabilities FP32 [n, k]  (softmax over all classes)
  logits FP32 [n, classes]   only when asked for: as a requested output, or parameter logits=true.

Framework-free (numpy only): the server's model class calls these and turns RequestError into the
protocol's "invalid argument" (HTTP 400, gRPC INVALID_ARGUMENT); the client shares the names.
"""

from __future__ import annotations

import functools
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
        if len(data) > MAX_IMAGE_BYTES:
            raise RequestError(f"image {i} is {len(data):,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed")
        images.append(data)
    return images


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
