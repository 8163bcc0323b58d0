import json

import pytest

from runtime.metadata import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_NAME_LENGTH,
    METADATA_KEY,
    SCHEMA_VERSION,
    ArtifactMetadata,
    MetadataError,
)
from runtime.preprocess import MAX_CROP, PreprocessSpec

pytestmark = pytest.mark.runtime


def sample(**overrides):
    values = dict(
        class_names=("cat", "dog"),
        preprocess=PreprocessSpec(resize=73, crop=64),
        model_config={"variant": "cifar", "num_classes": 2, "dropout": 0.5},
        input_shape=(None, 3, 64, 64),
        precision="fp32",
        format="onnx",
        source_sha256="ab" * 32,
        package_version="0.1.0",
        torch_version="2.13.0",
    )
    values.update(overrides)
    return ArtifactMetadata(**values)


def test_json_round_trip():
    meta = sample()
    again = ArtifactMetadata.from_json(meta.to_json())
    assert again == meta
    assert again.batch_size is None and again.num_classes == 2
    assert json.loads(meta.to_json())["input_shape"] == [None, 3, 64, 64]


def test_fixed_batch_round_trip():
    assert ArtifactMetadata.from_json(sample(input_shape=(4, 3, 64, 64)).to_json()).batch_size == 4


@pytest.mark.parametrize(
    "text, message",
    [("not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ('{"preprocess": {}}', "malformed")],
)
def test_malformed_metadata(text, message):
    with pytest.raises(MetadataError, match=message):
        ArtifactMetadata.from_json(text)


def test_newer_schema_is_refused():
    data = sample().to_dict() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(MetadataError, match="newer than this runtime"):
        ArtifactMetadata.from_dict(data)


# --- issue 9: metadata from files is untrusted; every field is type- and bounds-checked ---------------


BAD_FIELDS = [
    ({"preprocess": {"resize": "256", "crop": 224}}, "resize must be an integer"),
    ({"preprocess": {"resize": True, "crop": 1}}, "resize must be an integer"),
    ({"preprocess": {"resize": 0, "crop": 1}}, "resize must be an integer"),
    ({"preprocess": {"resize": 36.0, "crop": 32}}, "resize must be an integer"),
    ({"preprocess": {"resize": 2000, "crop": 1500}}, f"crop must be an integer from 1 to {MAX_CROP}"),
    ({"preprocess": {"resize": 32, "crop": 36}}, "crop 36 is larger than resize 32"),
    ({"preprocess": {"resize": 36, "crop": 32, "mean": [float("nan"), 0, 0]}}, "mean must be three finite numbers"),
    ({"preprocess": {"resize": 36, "crop": 32, "mean": "abc"}}, "mean must be three finite numbers"),
    ({"preprocess": {"resize": 36, "crop": 32, "std": [0, 1, 1]}}, "std must be three finite positive numbers"),
    ({"preprocess": {"resize": 36, "crop": 32, "std": [1, 1, float("inf")]}}, "std must be three finite positive"),
    ({"preprocess": {"resize": 36, "crop": 32, "std": [1, 1]}}, "std must be three finite positive"),
    ({"preprocess": {"resize": 36, "crop": 32, "interpolation": ["x"]}}, "unknown interpolation"),
    ({"preprocess": [36, 32]}, "preprocess must be an object"),
    ({"class_names": "abcd"}, "class_names must be a list of strings"),
    ({"class_names": [1, 2, 3, 4]}, r"class_names\[0\] must be a string"),
    ({"class_names": []}, "class_names must name 1 to"),
    ({"class_names": ["x" * (MAX_NAME_LENGTH + 1)]}, r"class_names\[0\] is 1,001 characters long"),
    ({"class_names": ["c"] * (MAX_CLASSES + 1)}, "class_names must name 1 to 100,000 classes"),
    ({"input_shape": [None, 3, 32]}, r"input_shape must be \[batch, 3, height, width\]"),
    ({"input_shape": [None, 1, 32, 32]}, "does not match 3-channel 32x32"),
    ({"input_shape": [None, 3, 64, 64]}, "does not match 3-channel 32x32"),
    ({"input_shape": [10**9, 3, 32, 32]}, f"input_shape batch must be null or an integer from 1 to {MAX_BATCH}"),
    ({"input_shape": [True, 3, 32, 32]}, "input_shape batch must be null or an integer"),
    ({"schema_version": "2"}, "schema_version must be a non-negative integer, got '2'"),
    ({"schema_version": True}, "schema_version must be a non-negative integer"),
    ({"precision": "fp8"}, "precision must be one of fp32, fp16"),
    ({"model_config": []}, "model_config must be an object"),
    ({"input_name": 5}, "input_name must be a string"),
]


@pytest.mark.parametrize("change, message", BAD_FIELDS, ids=[str(i) for i in range(len(BAD_FIELDS))])
def test_every_metadata_field_is_checked(change, message):
    data = sample(preprocess=PreprocessSpec(resize=36, crop=32), input_shape=(None, 3, 32, 32)).to_dict()
    if isinstance(change.get("preprocess"), dict):
        change = {"preprocess": data["preprocess"] | change["preprocess"]}
    data.update(change)
    with pytest.raises(MetadataError, match=message) as caught:
        ArtifactMetadata.from_dict(data)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert str(caught.value).startswith(f"malformed {METADATA_KEY} metadata: ")


def test_metadata_json_from_json_names_the_file_and_survives_deep_nesting():
    with pytest.raises(MetadataError, match="not valid JSON"):
        ArtifactMetadata.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MetadataError, match=r"^x\.onnx: malformed"):
        ArtifactMetadata.from_json(json.dumps(sample().to_dict() | {"precision": "int3"}), source="x.onnx")
