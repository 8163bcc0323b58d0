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
int8 converts at fp16, then stores every conv/linear weight as int8 with one scale per output
channel (coremltools.optimize.coreml, linear symmetric): Core ML dequantizes them to fp16 at
load time, so the package is about half the fp16 one and the compute stays fp16. Biases stay
fp16 (coremltools never compresses 1-D tensors). iOS 16 has that op (constexpr_affine_dequantize),
so int8 keeps the same deployment target. Before saving, every compressed weight is checked to
dequantize within one quantization step of the checkpoint's (export.coreml_checks.check_weights) and
the result is recorded in the metadata's `quantization`.
The classifier output carries the class names (ct.ClassifierConfig): `logits` is a
class -> raw score dictionary and `classLabel` the top class.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.common import ExportError, first_line, quiet_logger, trace, weight_bytes, write_directory
from export.coreml_bars import quiet_progress_bars
from export.quantize import QuantizeOptions
from runtime.integrity import COREML_DESCRIPTION, coreml_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.mlpackage import package_files
from runtime.protowire import replace_field

INPUT_NAME, OUTPUT_NAME, LABEL_NAME = "input", "logits", "classLabel"
MAX_BATCH = 64  # upper bound of the flexible batch (Core ML range dimensions need one)
DEPLOYMENT_TARGET = "iOS16"  # ML Programs with fp16 compute and ImageType inputs: iOS 16 / macOS 13
# What an int8 package's metadata records as `quantization["scheme"]` (and what _quantize applies).
INT8_SCHEME = {"method": "linear_symmetric", "granularity": "per_channel", "dtype": "int8", "compute": "fp16"}
INT8_OPS = ("conv", "linear")  # whose weights are compressed; avgpool's matmul matrices stay fp16


def _import_coremltools() -> Any:
    from runtime.mlprogram import ProgramLoadError, import_coremltools

    try:
        # coremltools warns at import about untested torch versions; the conversion is validated anyway.
        return import_coremltools()
    except ProgramLoadError:
        raise ExportError("Core ML export needs coremltools: pip install coremltools (Linux or macOS)") from None


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
    precision = ct.precision.FLOAT32 if metadata.precision == "fp32" else ct.precision.FLOAT16
    try:
        traced = trace(model, example)
        with warnings.catch_warnings(), quiet_logger("coremltools"), quiet_progress_bars():
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
        raise ExportError(f"Core ML conversion failed: {first_line(exc)}") from exc
    if metadata.precision == "int8":
        mlmodel = _quantize(mlmodel)
    mlmodel = _rename_probabilities(ct, mlmodel)
    _describe(mlmodel, metadata, coreml_input)
    return mlmodel


def _quantize(mlmodel: Any) -> Any:
    """`mlmodel` (fp16) with its conv/linear weights stored as per-channel symmetric int8."""
    import coremltools.optimize.coreml as cto

    # weight_threshold 0: every conv/linear weight, however small (a 2-class head included).
    op_config = cto.OpLinearQuantizerConfig(
        mode=INT8_SCHEME["method"],
        dtype=INT8_SCHEME["dtype"],
        granularity=INT8_SCHEME["granularity"],
        weight_threshold=0,
    )
    config = cto.OptimizationConfig(op_type_configs={op: op_config for op in INT8_OPS})
    try:
        with warnings.catch_warnings(), quiet_logger("coremltools"), quiet_progress_bars():
            warnings.simplefilter("ignore")
            return cto.linear_quantize_weights(mlmodel, config)
    except Exception as exc:  # coremltools raises plain ValueError/RuntimeError
        raise ExportError(f"Core ML int8 weight compression failed: {first_line(exc)}") from exc


def _record_int8(
    mlmodel: Any,
    model: nn.Module,
    metadata: ArtifactMetadata,
    coreml_input: str,
    options: QuantizeOptions,
    training: dict[str, Any] | None,
    echo: Callable[[str], None],
) -> ArtifactMetadata:
    """Check the compressed weights against `model`'s, gate the package's predictions
    (export/coreml_gate.py), and write the `quantization` record: {"scheme": INT8_SCHEME, "gate":
    {"passed", "kind": "weights" or "weights+predictions", "max_error_steps" (worst |dequantized -
    checkpoint| in units of its channel's scale), "limit_steps", "weights" (how many), and with
    predictions the gate's agreement/accuracy record and "evaluator"}}. A package failing the weight
    check is never written; one failing the prediction gate only with --force (then "passed" is false).
    """
    from export.coreml_checks import check_weights, expected_weights, load_program
    from export.coreml_gate import EVALUATOR, gate_int8

    std = metadata.preprocess.std if coreml_input == "image" else None
    program = load_program(mlmodel)  # read once: the weight check and the gate's evaluator share it
    report = check_weights(program, expected_weights(model, std), precision="int8")
    if report.problems:
        raise ExportError(f"the int8 Core ML weights fail their check: {report.problems[0]}")
    # Kept small: the scheme, and what the gate measured (error in units of each channel's scale).
    gate = {"passed": True, "kind": "weights", "max_error_steps": round(report.worst_steps, 4)}
    gate |= {"limit_steps": 1.0, "weights": report.compressed}
    result = gate_int8(mlmodel.get_spec(), program, model, metadata, options, training, echo)
    if result is not None:
        gate |= result.to_dict() | {"kind": "weights+predictions", "evaluator": EVALUATOR}
    metadata = dataclasses.replace(metadata, quantization={"scheme": dict(INT8_SCHEME), "gate": gate})
    _describe(mlmodel, metadata, coreml_input)  # the embedded metadata, now with the record
    return metadata


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


def _stamp_weights(mlmodel: Any, metadata: ArtifactMetadata, package: str) -> None:
    """Record the saved package's weights SHA-256 (runtime/integrity.py) in its metadata. Only the
    spec's description record is replaced, spliced in: saving again would re-serialize the program,
    whose maps protobuf writes in another order each time, and the hash is of those exact bytes."""
    digest = coreml_sha256(package)
    mlmodel.user_defined_metadata[METADATA_KEY] = dataclasses.replace(metadata, weights_sha256=digest).to_json()
    spec_file = package_files(package).spec
    description = mlmodel.get_spec().description.SerializeToString()
    spec_file.write_bytes(replace_field(spec_file.read_bytes(), COREML_DESCRIPTION, description))
    if coreml_sha256(package) != digest:
        raise ExportError("stamping the Core ML metadata changed the hashed bytes; not saved")


def export_coreml(
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    *,
    coreml_input: str = "image",
    quantize: QuantizeOptions | None = None,
    training: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Convert and save `output` (.mlpackage), built beside it and renamed when complete. int8:
    `quantize` holds the gate's settings, `training` the
    checkpoint's training record (whose data the gate holds out), `echo` gets the gate's lines."""
    mlmodel = convert(model, metadata, coreml_input)
    if metadata.precision == "int8":
        echo = echo or (lambda line: print(line, file=sys.stderr))
        metadata = _record_int8(mlmodel, model, metadata, coreml_input, quantize or QuantizeOptions(), training, echo)

    def save(tmp: str) -> None:
        try:
            mlmodel.save(tmp)
        except OSError:
            raise  # write_directory words it
        except Exception as exc:  # coremltools raises bare Exception for what it refuses
            raise ExportError(f"cannot save the Core ML package {output}: {first_line(exc)}") from exc
        _stamp_weights(mlmodel, metadata, tmp)

    write_directory(output, save, expected_bytes=weight_bytes(model, metadata.precision))
    return output
