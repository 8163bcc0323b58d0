"""alexnet-deploy's runtime: run exported AlexNet artifacts without PyTorch.

    import runtime
    predictor = runtime.load("demo-out/run/best.onnx")       # backend and device: auto
    [p] = predictor.predict("cat.jpg", topk=3)
    p.labels, p.probabilities

Importing this package loads numpy and Pillow only; onnxruntime, coremltools and torch
are imported by the backend that needs them, when a model is opened.
"""

from runtime.backends import (
    BackendUnavailableError,
    ModelLoadError,
    ModelRunError,
    backend_names,
    detect_backend,
    register_backend,
)
from runtime.decode import EncodedImage
from runtime.errors import DeployError
from runtime.loader import load, read_labels
from runtime.metadata import ArtifactMetadata, MetadataError
from runtime.predictor import InputError, Prediction, Predictor, softmax
from runtime.preprocess import ImageLoadError, PreprocessSpec

__all__ = [
    "ArtifactMetadata",
    "BackendUnavailableError",
    "DeployError",
    "EncodedImage",
    "ImageLoadError",
    "InputError",
    "MetadataError",
    "ModelLoadError",
    "ModelRunError",
    "Prediction",
    "Predictor",
    "PreprocessSpec",
    "backend_names",
    "detect_backend",
    "load",
    "read_labels",
    "register_backend",
    "softmax",
]
