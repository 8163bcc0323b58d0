"""Core ML models (.mlpackage / .mlmodel) on coremltools; prediction needs macOS.

An artifact's input is either a float tensor (N, 3, H, W) or an RGB image (the export's
``coreml_input="image"``, normalization inside the model). The spec says which. For an
image input the preprocessed batch is turned back into 8-bit RGB pixels
(x * std + mean) * 255, which is exact for pixels that came from an 8-bit image.

device: auto -> ALL compute units (CPU, GPU, Neural Engine), cpu -> CPU_ONLY,
mps -> CPU_AND_GPU. There is no cuda on a Mac.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import (
    Backend,
    BackendUnavailableError,
    ModelIO,
    ModelLoadError,
    check_model_path,
    platform_name,
    run_failed,
)
from runtime.errors import first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.mlpackage import package_files, parse_spec
from runtime.preprocess import PreprocessSpec

_COMPUTE_UNITS = {"auto": "ALL", "cpu": "CPU_ONLY", "mps": "CPU_AND_GPU"}


def _import_coremltools() -> Any:
    if sys.platform != "darwin":
        raise BackendUnavailableError(
            f"Core ML prediction needs macOS (this is {platform_name()}); run the ONNX or TorchScript "
            f"artifact here (--backend onnxruntime), or copy the .mlpackage to a Mac"
        )
    try:
        import coremltools
    except ImportError:
        raise BackendUnavailableError("the coreml backend needs coremltools: pip install coremltools") from None
    return coremltools


def to_pixels(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Undo `runtime.preprocess.normalize`: (N, 3, H, W) float32 -> (N, H, W, 3) uint8."""
    mean = np.asarray(spec.mean, np.float32)[None, :, None, None]
    std = np.asarray(spec.std, np.float32)[None, :, None, None]
    pixels = (batch * std + mean) * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _array_shape(array_type: Any) -> tuple[int | None, ...]:
    """(N, 3, H, W) of a multi-array input; None where the model accepts a range of sizes."""
    dims = [int(d) for d in array_type.shape]  # the default shape, even when flexible
    if len(dims) != 4:
        return (None, 3, None, None)
    if array_type.WhichOneof("ShapeFlexibility") == "shapeRange":
        ranges = array_type.shapeRange.sizeRanges
        return tuple(None if r.lowerBound != r.upperBound else int(r.lowerBound) for r in ranges)
    if array_type.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        shapes = [tuple(s.shape) for s in array_type.enumeratedShapes.shapes]
        return tuple(None if len({s[i] for s in shapes}) > 1 else dims[i] for i in range(4))
    return tuple(dims)


def describe_spec(spec: Any, path: str | Path) -> tuple[ArtifactMetadata | None, bool, ModelIO]:
    """What a Core ML spec declares: (embedded metadata or None, whether the input is an image, its ModelIO)."""
    description = spec.description
    text = description.metadata.userDefined.get(METADATA_KEY)
    metadata = ArtifactMetadata.from_json(text, source=path) if text else None
    if not description.input:
        raise ModelLoadError(f"{path} declares no input")
    feature = description.input[0]
    image_input = feature.type.WhichOneof("Type") == "imageType"
    if image_input:
        # An image input takes one picture per prediction.
        shape = (1, 3, feature.type.imageType.height or None, feature.type.imageType.width or None)
    else:
        shape = _array_shape(feature.type.multiArrayType)
    outputs = [o.name for o in description.output]
    # A classifier (our exports) returns a class -> score dictionary under predictedProbabilitiesName.
    scores = description.predictedProbabilitiesName or (
        metadata.output_name if metadata and metadata.output_name in outputs else outputs[0]
    )
    return (
        metadata,
        image_input,
        ModelIO(input_name=feature.name, input_shape=shape, output_name=scores, num_outputs=None),
    )


class CoreMLBackend(Backend):
    name = "coreml"
    format = "coreml"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        ct = _import_coremltools()
        self.path = path
        check_model_path(Path(path))  # a FIFO named model.mlmodel would block the read
        if device not in _COMPUTE_UNITS:
            raise BackendUnavailableError(f"--device {device} does not exist for Core ML; use auto, cpu or mps")
        units = getattr(ct.ComputeUnit, _COMPUTE_UNITS[device])
        # The files are found and confined here (runtime.mlpackage), not by MLModel(path): its
        # package class would follow a manifest anywhere and rewrite Manifest.json. From a spec,
        # MLModel builds a temporary package of its own, with a copy of the checked weights.
        files = package_files(path)
        spec = parse_spec(files.read_spec(), path)
        weights = str(files.weights) if files.weights is not None else None
        try:
            self.model = ct.models.MLModel(spec, weights_dir=weights, compute_units=units)
        except Exception as exc:  # coremltools raises plain Exception/RuntimeError for bad packages
            raise ModelLoadError(f"coremltools cannot load {path}: {first_line(exc)}") from exc
        self.device = _COMPUTE_UNITS[device]
        self.metadata, self.image_input, self.io = describe_spec(self.model.get_spec(), path)
        self._spec = self.metadata.preprocess if self.metadata else None
        self._class_order = self.metadata.class_names if self.metadata else None  # the dictionary's keys, in order

    def configure(self, metadata: ArtifactMetadata) -> None:
        self._spec = metadata.preprocess
        self._class_order = self._class_order or metadata.class_names

    def run(self, batch: np.ndarray) -> np.ndarray:
        # batch: (N, 3, H, W) -> logits (N, classes). One feature dict per image, run as one
        # Core ML batch prediction: a classifier's dictionary output is per image.
        if self.image_input:
            from PIL import Image

            feeds = [{self.io.input_name: Image.fromarray(p, "RGB")} for p in to_pixels(batch, self._spec)]
        else:
            batch = batch.astype(np.float32, copy=False)
            feeds = [{self.io.input_name: batch[i : i + 1]} for i in range(len(batch))]
        try:
            results = self.model.predict(feeds) if len(feeds) > 1 else [self.model.predict(feeds[0])]
        except Exception as exc:  # coremltools raises plain Exception/RuntimeError from the Core ML framework
            raise run_failed(
                self.path, exc, batch, f"{self.io.input_shape} {'image' if self.image_input else 'tensor'}"
            ) from exc
        return np.stack([self._scores(r[self.io.output_name]) for r in results])

    def _scores(self, value: Any) -> np.ndarray:
        """One image's output -> (classes,) float32, a dictionary read in class order."""
        if isinstance(value, dict):
            missing = [name for name in self._class_order if name not in value]
            if missing:
                raise ModelLoadError(
                    f"the Core ML model's scores have no class {missing[0]!r}; its labels differ from the metadata"
                )
            return np.array([value[name] for name in self._class_order], np.float32)
        return np.asarray(value, np.float32).reshape(-1)
