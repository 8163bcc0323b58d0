"""The metadata schema every exported artifact carries (defined here, once).

Each format stores it where its table entry says (runtime/formats.py: `metadata`; ONNX in
``metadata_props``, OpenVINO in ``rt_info``, ...): always as one JSON string under `METADATA_KEY`,
so the runtime needs nothing but the artifact to predict (class names, preprocessing, input shape).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runtime.errors import MetadataError
from runtime.formats import PRECISIONS
from runtime.preprocess import PreprocessSpec, short_repr

METADATA_KEY = "alexnet_deploy"
SCHEMA_VERSION = 1
# Bytes one weight takes at each precision (bf16: a benchmark-only precision of torch eager).
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Bounds on metadata from files (artifacts, checkpoints, --labels), which may be hostile;
# the preprocessing bounds are in runtime/preprocess.py.
MAX_CLASSES = 100_000
MAX_NAME_LENGTH = 1_000  # characters in one class name, or in any other metadata string
MAX_BATCH = 1_024  # a fixed batch size (the predictor pads every call to it)
# The `quantization` record (int8 artifacts): plain JSON, bounded in depth and size.
MAX_RECORD_DEPTH = 4
MAX_RECORD_ITEMS = 1_000
_TEXT_FIELDS = ("input_name", "output_name", "format", "source_sha256", "package_version", "torch_version")
_REQUIRED = ("class_names", "preprocess", "model_config", "input_shape")

__all__ = [
    "ArtifactMetadata",
    "MetadataError",
    "check_class_names",
    "check_batch_size",
    "METADATA_KEY",
    "SCHEMA_VERSION",
    "BYTES_PER_WEIGHT",
    "PRECISIONS",
    "MAX_CLASSES",
    "MAX_NAME_LENGTH",
    "MAX_BATCH",
]


@dataclass(frozen=True)
class ArtifactMetadata:
    class_names: tuple[str, ...]
    preprocess: PreprocessSpec
    model_config: dict[str, Any]  # alexnet.model.AlexNetConfig.to_dict(); kept as a dict so runtime needs no torch
    input_name: str = "input"
    output_name: str = "logits"
    # (batch, 3, H, W); batch is None for a dynamic-batch artifact.
    input_shape: tuple[int | None, int, int, int] = (None, 3, 224, 224)
    precision: str = "fp32"
    format: str = ""  # a name in runtime.formats.FORMATS
    source_sha256: str = ""
    package_version: str = ""
    torch_version: str = ""
    # int8 artifacts: how they were quantized and what the accuracy gate measured, e.g.
    # {"scheme": {...}, "calibration": {...}, "gate": {"passed": true, "agreement": 0.998, ...},
    #  "fp32_layers": ["features.0"], "target_cpu": "avx2"} (export/quantize.py writes it).
    quantization: dict[str, Any] | None = None
    # The SHA-256 of the artifact's weights as exported (runtime/integrity.py says of which bytes);
    # runtime.load checks it. "" for artifacts exported before it was recorded: nothing to check.
    weights_sha256: str = ""
    # A dynamic-batch artifact whose engine takes at most this many images per call (an ExecuTorch
    # program's memory plan: runtime/formats.py `max_batch`); the predictor splits larger batches.
    # None: no limit (or a fixed batch, input_shape[0]).
    max_batch: int | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def batch_size(self) -> int | None:
        """The fixed batch size, or None when the artifact takes any batch."""
        return self.input_shape[0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["preprocess"] = self.preprocess.to_dict()
        data["input_shape"] = list(self.input_shape)
        if data["quantization"] is None:
            del data["quantization"]  # fp32/fp16 metadata stays what it was before int8 existed
        if data["max_batch"] is None:
            del data["max_batch"]  # as before the field existed
        if not data["weights_sha256"]:
            del data["weights_sha256"]  # metadata not yet stamped (export stamps it last) reads as before
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ArtifactMetadata:
        """From untrusted JSON: every field is type- and bounds-checked; any fault is a one-line MetadataError."""
        if not isinstance(data, dict):
            raise MetadataError(f"{METADATA_KEY} metadata must be a JSON object")
        version = data.get("schema_version", 0)  # absent in the earliest artifacts
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise _malformed(f"schema_version must be a non-negative integer, got {short_repr(version)}")
        if version > SCHEMA_VERSION:
            raise MetadataError(
                f"metadata schema version {version} is newer than this runtime ({SCHEMA_VERSION}); upgrade alexnet-deploy"
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise _malformed(f"missing {', '.join(missing)}")
        try:
            spec = PreprocessSpec.from_dict(data["preprocess"])
            values = {key: _text(key, data[key]) for key in _TEXT_FIELDS if key in data}
            if not isinstance(data["model_config"], dict):
                raise MetadataError(f"model_config must be an object, got {short_repr(data['model_config'])}")
            precision = data.get("precision", "fp32")
            if not isinstance(precision, str) or precision not in PRECISIONS:
                raise MetadataError(f"precision must be one of {', '.join(PRECISIONS)}, got {short_repr(precision)}")
            return cls(
                class_names=check_class_names(data["class_names"]),
                preprocess=spec,
                model_config=dict(data["model_config"]),
                input_shape=_input_shape(data["input_shape"], spec.crop),
                precision=precision,
                quantization=_record(data.get("quantization")),
                weights_sha256=_sha256("weights_sha256", data.get("weights_sha256", "")),
                max_batch=check_batch_size(data.get("max_batch"), "max_batch"),
                schema_version=version,
                **values,
            )
        except MetadataError as exc:
            raise _malformed(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str | bytes, source: str | os.PathLike | None = None) -> ArtifactMetadata:
        """Parse the embedded JSON; `source` (the artifact's path) prefixes any error."""
        try:
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise MetadataError(f"{METADATA_KEY} metadata is not valid JSON: {exc}") from exc
            return cls.from_dict(data)
        except MetadataError as exc:
            if source is None:
                raise
            raise MetadataError(f"{os.fspath(source)}: {exc}") from exc


def _malformed(detail: str) -> MetadataError:
    return MetadataError(f"malformed {METADATA_KEY} metadata: {detail}")


def check_class_names(names: Any, what: str = "class_names") -> tuple[str, ...]:
    """A list of 1..MAX_CLASSES strings of at most MAX_NAME_LENGTH characters, as a tuple."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise MetadataError(f"{what} must be a list of strings, got {short_repr(names)}")
    if not 1 <= len(names) <= MAX_CLASSES:
        raise MetadataError(f"{what} must name 1 to {MAX_CLASSES:,} classes, got {len(names):,}")
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise MetadataError(f"{what}[{index}] must be a string, got {short_repr(name)}")
        if len(name) > MAX_NAME_LENGTH:
            raise MetadataError(f"{what}[{index}] is {len(name):,} characters long, more than {MAX_NAME_LENGTH:,}")
    return tuple(names)


def check_batch_size(batch: Any, what: str = "batch size") -> int | None:
    """None (any batch; -1 in JSON and ONNX means the same) or an integer in 1..MAX_BATCH."""
    if batch is None or (batch == -1 and not isinstance(batch, bool)):
        return None
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise MetadataError(f"{what} must be null or an integer from 1 to {MAX_BATCH}, got {short_repr(batch)}")
    return batch


def _input_shape(shape: Any, crop: int) -> tuple[int | None, int, int, int]:
    """[batch, 3, crop, crop]: the input an artifact takes must be what its preprocessing makes."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 4:
        raise MetadataError(f"input_shape must be [batch, 3, height, width], got {short_repr(shape)}")
    batch = check_batch_size(shape[0], "input_shape batch")
    if list(shape[1:]) != [3, crop, crop] or any(isinstance(d, bool) for d in shape[1:]):
        raise MetadataError(
            f"input_shape {short_repr(list(shape))} does not match 3-channel {crop}x{crop} inputs (the preprocess crop)"
        )
    return batch, 3, crop, crop


def _record(value: Any) -> dict[str, Any] | None:
    """The `quantization` record: null, or a JSON object of at most MAX_RECORD_ITEMS values,
    MAX_RECORD_DEPTH levels deep, strings of at most MAX_NAME_LENGTH characters."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MetadataError(f"quantization must be an object or null, got {short_repr(value)}")
    pending, count = [(value, 1)], 0
    while pending:
        node, depth = pending.pop()
        count += 1
        if count > MAX_RECORD_ITEMS or depth > MAX_RECORD_DEPTH:
            raise MetadataError(
                f"quantization record is larger than {MAX_RECORD_ITEMS:,} values or {MAX_RECORD_DEPTH} levels"
            )
        if isinstance(node, dict):
            if not all(isinstance(k, str) and len(k) <= MAX_NAME_LENGTH for k in node):
                raise MetadataError("quantization record keys must be strings")
            pending += [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            pending += [(v, depth + 1) for v in node]
        elif isinstance(node, str) and len(node) > MAX_NAME_LENGTH:
            raise MetadataError(f"a quantization record string is longer than {MAX_NAME_LENGTH:,} characters")
        elif not isinstance(node, (str, int, float, bool)) and node is not None:
            raise MetadataError(f"quantization record holds a non-JSON value {short_repr(node)}")
    return value


def _sha256(key: str, value: Any) -> str:
    """An empty string, or a SHA-256 as 64 lowercase hex digits (what hashlib's hexdigest writes)."""
    if value == "" or (isinstance(value, str) and len(value) == 64 and not value.strip("0123456789abcdef")):
        return value
    raise MetadataError(f"{key} must be a SHA-256 in 64 lowercase hex digits, got {short_repr(value)}")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH:
        raise MetadataError(
            f"{key} must be a string of at most {MAX_NAME_LENGTH:,} characters, got {short_repr(value)}"
        )
    return value
