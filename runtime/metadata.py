"""The metadata schema every exported artifact carries (defined here, once).

TorchScript stores it in ``_extra_files``, ONNX in ``metadata_props``, Core ML in
``user_defined_metadata``: always as one JSON string under `METADATA_KEY`, so the runtime
needs nothing but the artifact to predict (class names, preprocessing, input shape).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from runtime.errors import DeployError
from runtime.preprocess import PreprocessSpec

METADATA_KEY = "alexnet_deploy"
SCHEMA_VERSION = 1


class MetadataError(DeployError, ValueError):
    """An artifact has no (or unreadable) alexnet-deploy metadata."""


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
    format: str = ""  # torchscript | onnx | coreml
    source_sha256: str = ""
    package_version: str = ""
    torch_version: str = ""
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
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArtifactMetadata":
        try:
            version = int(data.get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise MetadataError(f"metadata schema version {version} is newer than this runtime ({SCHEMA_VERSION}); upgrade alexnet-deploy")
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            values["class_names"] = tuple(str(n) for n in data["class_names"])
            values["preprocess"] = PreprocessSpec.from_dict(data["preprocess"])
            values["input_shape"] = tuple(None if d in (None, -1) else int(d) for d in data["input_shape"])
            return cls(**values)
        except MetadataError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"malformed {METADATA_KEY} metadata: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "ArtifactMetadata":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MetadataError(f"{METADATA_KEY} metadata is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MetadataError(f"{METADATA_KEY} metadata must be a JSON object")
        return cls.from_dict(data)
