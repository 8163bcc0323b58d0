import json

import pytest

pytestmark = pytest.mark.runtime

from runtime.metadata import SCHEMA_VERSION, ArtifactMetadata, MetadataError
from runtime.preprocess import PreprocessSpec


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
