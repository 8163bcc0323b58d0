"""Property-based fuzzing of everything that parses untrusted input (issue 9, section 9).

The only allowed outcomes are a result or the documented error type: an image loads and
preprocesses to a finite (3, crop, crop) float32 array or raises ImageLoadError; metadata
parses or raises MetadataError; a checkpoint loads or raises CheckpointError. Anything else
(a TypeError, a hang, a NaN that slips through) is a bug these tests find.

CI runs the derandomized "ci" profile (fixed examples, under a minute in all). To look harder:

    .venv/bin/pytest tests/test_fuzz.py --hypothesis-profile long      # 20x the examples, random
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from alexnet.checkpoint import FORMAT_NAME, FORMAT_VERSION, CheckpointError, load_checkpoint
from runtime.metadata import ArtifactMetadata, MetadataError
from runtime.preprocess import ImageLoadError, PreprocessSpec, preprocess_image

SPEC = PreprocessSpec(resize=36, crop=32)  # small, so an example costs milliseconds
# tmp_path is one folder for all of a test's examples: each example overwrites its file.
FILE_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
# torch.save/safetensors per example cost more: a third of the profile's examples.
SLOW_FILE_SETTINGS = settings(FILE_SETTINGS, max_examples=max(settings().max_examples // 3, 10))

# Any JSON value, NaN and infinities included (Python's json reads them).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12,
)


def assert_one_line(exc: BaseException) -> None:
    """The documented error, worded as the CLIs print it: one non-empty line."""
    assert str(exc) and "\n" not in str(exc)


def check_preprocessed(array: np.ndarray) -> None:
    assert array.shape == (3, SPEC.crop, SPEC.crop) and array.dtype == np.float32
    assert np.isfinite(array).all()


def load_or_refuse(path) -> None:
    try:
        check_preprocessed(preprocess_image(path, SPEC))
    except ImageLoadError as exc:
        assert_one_line(exc)


# --- images -------------------------------------------------------------------------------


@FILE_SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_an_image_or_an_image_load_error(tmp_path, data):
    path = tmp_path / "random.png"
    path.write_bytes(data)
    load_or_refuse(path)


# (format, mode) pairs Pillow writes; each decoder gets its own header.
ENCODINGS = [
    ("PNG", "RGB"),
    ("PNG", "RGBA"),
    ("PNG", "P"),
    ("PNG", "I;16"),
    ("PNG", "1"),
    ("JPEG", "RGB"),
    ("JPEG", "L"),
    ("JPEG", "CMYK"),
    ("GIF", "P"),
    ("TIFF", "RGB"),
    ("TIFF", "F"),
    ("TIFF", "I"),
    ("WEBP", "RGB"),
    ("BMP", "RGB"),
    ("PPM", "RGB"),
]


def encode(fmt: str, mode: str, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@FILE_SETTINGS
@given(
    encoding=st.sampled_from(ENCODINGS),
    width=st.integers(1, 48),
    height=st.integers(1, 48),
    seed=st.integers(0, 2**32 - 1),
)
def test_valid_images_of_any_mode_and_size_preprocess(tmp_path, encoding, width, height, seed):
    path = tmp_path / f"image.{encoding[0].lower()}"
    path.write_bytes(encode(*encoding, width, height, seed))
    check_preprocessed(preprocess_image(path, SPEC))


@FILE_SETTINGS
@given(
    encoding=st.sampled_from(ENCODINGS),
    seed=st.integers(0, 2**32 - 1),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 4095)),
)
def test_mutated_images_are_an_image_or_an_image_load_error(tmp_path, encoding, seed, edits, cut):
    data = bytearray(encode(*encoding, 24, 20, seed))
    for position, value in edits:  # mostly the header: the first bytes are where decoders trust sizes
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path / f"mutated.{encoding[0].lower()}"
    path.write_bytes(bytes(data))
    load_or_refuse(path)


# --- metadata -----------------------------------------------------------------------------


def valid_metadata() -> dict:
    return ArtifactMetadata(
        class_names=("cat", "dog"),
        preprocess=SPEC,
        model_config={"variant": "cifar", "num_classes": 2},
        input_shape=(None, 3, SPEC.crop, SPEC.crop),
        format="onnx",
    ).to_dict()


METADATA_FIELDS = list(valid_metadata()) + [f"preprocess.{k}" for k in SPEC.to_dict()]


def replaced(data: dict, field: str, value) -> dict:
    data = json.loads(json.dumps(data))
    if field.startswith("preprocess."):
        data["preprocess"][field.split(".", 1)[1]] = value
    else:
        data[field] = value
    return data


def check_accepted(meta: ArtifactMetadata) -> None:
    """What the runtime relies on once metadata is accepted: bounded, finite, consistent, strict JSON."""
    spec = meta.preprocess
    assert 1 <= spec.crop <= spec.resize
    assert all(math.isfinite(v) for v in spec.mean + spec.std) and min(spec.std) > 0
    assert meta.input_shape[1:] == (3, spec.crop, spec.crop)
    assert all(isinstance(name, str) for name in meta.class_names)
    json.dumps(meta.to_dict(), allow_nan=False)


@given(field=st.sampled_from(METADATA_FIELDS), value=JSON)
def test_metadata_fields_parse_or_raise_metadata_error(field, value):
    try:
        meta = ArtifactMetadata.from_dict(replaced(valid_metadata(), field, value))
    except MetadataError as exc:
        assert_one_line(exc)
    else:
        check_accepted(meta)


@given(value=JSON)
def test_any_json_document_is_metadata_or_a_metadata_error(value):
    try:
        check_accepted(ArtifactMetadata.from_json(json.dumps(value)))
    except MetadataError:
        pass


@given(data=st.dictionaries(st.sampled_from(list(SPEC.to_dict())), JSON, max_size=5))
def test_preprocess_spec_parses_or_raises_metadata_error(data):
    try:
        spec = PreprocessSpec.from_dict(data)
    except MetadataError:
        return
    assert 1 <= spec.crop <= spec.resize and min(spec.std) > 0


# --- checkpoints --------------------------------------------------------------------------


def valid_checkpoint_dict() -> dict:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": "0.1.0",
        "model_config": {"variant": "cifar", "num_classes": 2, "dropout": 0.0},
        "class_names": ["cat", "dog"],
        "preprocess": SPEC.to_dict(),
        "model_state": {"features.0.weight": torch.zeros(2)},
    }


CHECKPOINT_FIELDS = [k for k in valid_checkpoint_dict() if k != "model_state"] + [
    "model_config.variant",
    "model_config.num_classes",
    "model_config.dropout",
    "model_config.width_divisor",
]


@SLOW_FILE_SETTINGS
@given(field=st.sampled_from(CHECKPOINT_FIELDS), value=JSON)
def test_checkpoint_fields_load_or_raise_checkpoint_error(tmp_path, field, value):
    data = valid_checkpoint_dict()
    if "." in field:
        outer, inner = field.split(".")
        data[outer] = dict(data[outer], **{inner: value})
    else:
        data[field] = value
    path = tmp_path / "fuzz.pth"
    torch.save(data, path)
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        assert_one_line(exc)
        return
    assert isinstance(checkpoint.class_names, list) and all(isinstance(n, str) for n in checkpoint.class_names)


@SLOW_FILE_SETTINGS
@given(header=st.one_of(st.text(max_size=40), JSON.map(json.dumps)))
def test_safetensors_headers_load_or_raise_checkpoint_error(tmp_path, header):
    from safetensors.torch import save_file

    path = tmp_path / "fuzz.safetensors"
    save_file({"features.0.weight": torch.zeros(2)}, str(path), metadata={"alexnet_deploy": header})
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        assert_one_line(exc)


@SLOW_FILE_SETTINGS
@given(data=st.binary(max_size=1024))
def test_random_bytes_are_not_a_checkpoint(tmp_path, data):
    path = tmp_path / "random.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
