"""Integrity at load without torch or onnx (issue 26, item 10): the runtime's protobuf walker finds
an ONNX file's graph and metadata, and runtime.load checks the recorded weights hash. The model
is the committed tests/data/tiny.onnx, stamped here the way an export stamps it."""

from __future__ import annotations

import dataclasses

import pytest
from tiny_onnx import TINY_ONNX, tiny_weights

import runtime
from runtime import DeployError
from runtime.integrity import IntegrityError, onnx_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.protowire import LEN, WireError, fields, length_delimited, replace_field

pytestmark = pytest.mark.runtime

METADATA_PROPS = 14  # ModelProto.metadata_props: StringStringEntryProto {key = 1, value = 2}


def embedded_metadata(data: bytes) -> ArtifactMetadata:
    [entry] = [f for f in fields(data) if f.number == METADATA_PROPS]
    pairs = {f.number: data[f.value_start : f.end] for f in fields(data, entry.value_start, entry.end)}
    assert pairs[1] == METADATA_KEY.encode()
    return ArtifactMetadata.from_json(pairs[2])


def stamped(tmp_path):
    """tiny.onnx with the runtime's digest of it recorded as weights_sha256."""
    path = tmp_path / "tiny.onnx"
    data = TINY_ONNX.read_bytes()
    assert embedded_metadata(data).weights_sha256 == ""  # committed before hashes were recorded
    path.write_bytes(data)
    metadata = dataclasses.replace(embedded_metadata(data), weights_sha256=onnx_sha256(path))
    entry = length_delimited(1, METADATA_KEY.encode()) + length_delimited(2, metadata.to_json().encode())
    path.write_bytes(replace_field(data, METADATA_PROPS, entry))
    return path


def flip_weight(path):
    data = bytearray(path.read_bytes())
    weight = tiny_weights()[0].tobytes()
    offset = bytes(data).find(weight)
    assert offset > 0
    data[offset + len(weight) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_metadata_is_outside_the_hash_and_a_stamped_model_loads(tmp_path):
    path = stamped(tmp_path)
    assert onnx_sha256(path) == onnx_sha256(TINY_ONNX)  # the metadata changed, the hashed graph did not
    with runtime.load(path) as predictor:
        assert predictor.metadata.weights_sha256 == onnx_sha256(path)


def test_a_flipped_weight_bit_is_refused_naming_the_file(tmp_path):
    path = stamped(tmp_path)
    flip_weight(path)
    with pytest.raises(IntegrityError) as caught:
        runtime.load(path)
    message = str(caught.value)
    assert (
        message.startswith(f"{path}: its weights do not match the SHA-256 recorded at export") and "\n" not in message
    )
    with runtime.load(path, verify=False) as predictor:
        assert predictor.metadata.num_classes == 3


def test_a_truncated_copy_fails(tmp_path):
    path = stamped(tmp_path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DeployError, match=str(path)):
        runtime.load(path)


def test_a_model_without_a_recorded_hash_loads_unchecked(tmp_path):
    path = tmp_path / "old.onnx"
    path.write_bytes(TINY_ONNX.read_bytes())
    flip_weight(path)
    with runtime.load(path) as predictor:
        assert predictor.metadata.weights_sha256 == ""


@pytest.mark.parametrize(
    "data, problem",
    [(b"\x08", "past the end"), (b"\x0a\x05ab", "past the end"), (b"\x0b", "wire type 3"), (b"\x00", "numbered 0")],
)
def test_the_walker_refuses_malformed_messages(data, problem):
    with pytest.raises(WireError, match=problem):
        list(fields(data))


def test_replace_field_keeps_every_other_record_byte_for_byte():
    data = b"\x08\x96\x01" + length_delimited(2, b"old") + length_delimited(3, b"kept")
    replaced = replace_field(data, 2, b"new!")
    assert replaced == b"\x08\x96\x01" + length_delimited(2, b"new!") + length_delimited(3, b"kept")
    [first, second, third] = fields(replaced)
    assert (first.number, first.number_value) == (1, 150) and second.wire_type == LEN and third.number == 3
