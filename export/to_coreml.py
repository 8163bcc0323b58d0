"""Checkpoint -> Core ML ML Program (.mlpackage), converted from a traced module by coremltools.

Input kinds:
- ``image`` (default): an RGB image input, batch 1. Core ML's ImageType applies one scalar
  `scale` and a per-channel `bias`, so it computes x = pixel/255 - mean; the per-channel
  1/std cannot be a scalar scale, so it is folded into conv1's weights (W[:, c] /= std[c]).
  That is exact, padding included: conv1 pads with zeros, and zero in (x - mean) is zero in
  (x - mean) / std. No extra layer, no extra compute.
- ``tensor``: a float32 (N, 3, H, W) input taking preprocessed (normalized) batches, with a
  flexible batch (RangeDim) unless a batch size was fixed.

fp16 (the Core ML default) stores weights and computes in float16; fp32 keeps float32.
The classifier output carries the class names (ct.ClassifierConfig): `logits` is a
class -> raw score dictionary and `classLabel` the top class.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.common import ExportError, first_line, quiet_logger, trace, weight_bytes, write_directory
from runtime.metadata import METADATA_KEY, ArtifactMetadata

INPUT_NAME, OUTPUT_NAME, LABEL_NAME = "input", "logits", "classLabel"
MAX_BATCH = 64  # upper bound of the flexible batch (Core ML range dimensions need one)
DEPLOYMENT_TARGET = "iOS16"  # ML Programs with fp16 compute and ImageType inputs: iOS 16 / macOS 13


def _import_coremltools() -> Any:
    try:
        # coremltools warns at import about untested torch versions; the conversion is validated anyway.
        with warnings.catch_warnings(), quiet_logger("coremltools"):
            warnings.simplefilter("ignore")
            import coremltools as ct
    except ImportError:
        raise ExportError("Core ML export needs coremltools: pip install coremltools (Linux or macOS)") from None
    return ct


def fold_std(model: nn.Module, std: tuple[float, float, float]) -> nn.Module:
    """A copy of `model` whose first convolution divides its input channels by `std`."""
    folded = copy.deepcopy(model)
    conv = next(m for m in folded.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        # weight: (out, 3, k, k); input channel c is scaled by 1/std[c].
        conv.weight /= torch.tensor(std, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    return folded


class FixedAdaptiveAvgPool(nn.Module):
    """AdaptiveAvgPool2d for one known input size (h, w), as two averaging matmuls.

    Core ML converts adaptive pooling only when every input dimension is static, which a
    flexible batch breaks; the matrices P_h (out, h) and P_w (out, w) hold the same windows
    PyTorch uses (start = floor(i*h/out), end = ceil((i+1)*h/out)), so the result is the same.
    """

    def __init__(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", _pool_matrix(in_size[0], out_size[0]))  # (out_h, h)
        self.register_buffer("cols", _pool_matrix(in_size[1], out_size[1]).t().contiguous())  # (w, out_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, h, w) -> (N, C, h, out_w) -> (N, C, out_h, out_w)
        return torch.matmul(self.rows, torch.matmul(x, self.cols))


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    matrix = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def static_pooling(model: nn.Module, image_size: int) -> nn.Module:
    """A copy of `model` whose adaptive pooling is fixed for `image_size` inputs."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        h, w = model.features(torch.zeros(1, 3, image_size, image_size)).shape[-2:]
    out = model.avgpool.output_size
    out = (out, out) if isinstance(out, int) else tuple(out)
    model.avgpool = FixedAdaptiveAvgPool((int(h), int(w)), out)
    return model


def _inputs(ct: Any, metadata: ArtifactMetadata, coreml_input: str) -> list[Any]:
    _, _, height, width = metadata.input_shape
    if coreml_input == "image":
        spec = metadata.preprocess
        return [
            ct.ImageType(
                name=INPUT_NAME,
                shape=(1, 3, height, width),
                scale=1.0 / 255.0,
                bias=[-m for m in spec.mean],
                color_layout=ct.colorlayout.RGB,
            )
        ]
    batch = metadata.batch_size or ct.RangeDim(lower_bound=1, upper_bound=MAX_BATCH, default=1)
    return [ct.TensorType(name=INPUT_NAME, shape=(batch, 3, height, width))]


def convert(model: nn.Module, metadata: ArtifactMetadata, coreml_input: str = "image") -> Any:
    """The in-memory `ct.models.MLModel` (conversion works on Linux; prediction needs macOS)."""
    ct = _import_coremltools()
    _, _, height, width = metadata.input_shape
    model = static_pooling(model, height)
    if coreml_input == "image":
        model = fold_std(model, metadata.preprocess.std)
    example = torch.rand(metadata.batch_size or 1, 3, height, width)
    precision = ct.precision.FLOAT16 if metadata.precision == "fp16" else ct.precision.FLOAT32
    try:
        traced = trace(model, example)
        with warnings.catch_warnings(), quiet_logger("coremltools"):
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(
                traced,
                inputs=_inputs(ct, metadata, coreml_input),
                outputs=[ct.TensorType(name=OUTPUT_NAME)],
                classifier_config=ct.ClassifierConfig(list(metadata.class_names), predicted_feature_name=LABEL_NAME),
                convert_to="mlprogram",
                compute_precision=precision,
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                skip_model_load=True,
            )
    except Exception as exc:  # coremltools raises plain ValueError/RuntimeError/NotImplementedError
        raise ExportError(f"Core ML conversion failed: {first_line(exc)}") from None
    mlmodel = _rename_probabilities(ct, mlmodel)
    _describe(mlmodel, metadata, coreml_input)
    return mlmodel


def _rename_probabilities(ct: Any, mlmodel: Any) -> Any:
    """coremltools names the class -> score dictionary `classLabel_probs`; call it `logits`
    (the metadata's output_name): the scores are the raw logits, no softmax is added."""
    spec = mlmodel.get_spec()
    current = spec.description.predictedProbabilitiesName
    if current and current != OUTPUT_NAME:
        ct.utils.rename_feature(spec, current, OUTPUT_NAME)
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    return mlmodel


def _describe(mlmodel: Any, metadata: ArtifactMetadata, coreml_input: str) -> None:
    variant = metadata.model_config.get("variant", "?")
    mlmodel.author = "alexnet-deploy"
    mlmodel.short_description = f"AlexNet ({variant} variant), {metadata.num_classes} classes, {metadata.precision}"
    mlmodel.version = metadata.package_version or "0"
    mlmodel.input_description[INPUT_NAME] = (
        "RGB image, normalization inside the model"
        if coreml_input == "image"
        else "normalized float tensor (N, 3, H, W)"
    )
    mlmodel.output_description[LABEL_NAME] = "the most likely class"
    mlmodel.output_description[OUTPUT_NAME] = "class name -> logit (raw score, no softmax)"
    mlmodel.user_defined_metadata[METADATA_KEY] = metadata.to_json()


def export_coreml(model: nn.Module, metadata: ArtifactMetadata, output: Path, *, coreml_input: str = "image") -> Path:
    """Convert and save `output` (.mlpackage), built beside it and renamed when complete."""
    mlmodel = convert(model, metadata, coreml_input)

    def save(tmp: str) -> None:
        try:
            mlmodel.save(tmp)
        except OSError:
            raise  # write_directory words it
        except Exception as exc:  # coremltools raises bare Exception for what it refuses
            raise ExportError(f"cannot save the Core ML package {output}: {first_line(exc)}") from None

    write_directory(output, save, expected_bytes=weight_bytes(model, metadata.precision))
    return output
