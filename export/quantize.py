"""Checkpoint -> calibrated int8 ONNX (static QDQ, per-channel weights), behind the accuracy gate.

Steps: export fp32 ONNX to a scratch folder -> onnxruntime's quant_pre_process -> calibrate
activation ranges once on the calibration images (cached, reused by every attempt) ->
quantize -> gate on held-out images (export/gate.py). When the gate fails: on x86 without
VNNI, 7-bit weights (reduce_range, onnxruntime's guard against u8s8 saturation); then each
Conv/Gemm's sensitivity is measured (the gate's logit error with that layer alone kept in
fp32) and the most sensitive layers stay fp32, one more per step, until a step passes.
Nothing reaches the target name unless a step passes (or `force`, which records the failure).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export import calibration
from export.common import ExportError, first_line
from export.gate import GateData, GateResult
from runtime.cpu import DESCRIPTIONS, detect_cpu
from runtime.metadata import METADATA_KEY, ArtifactMetadata

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
TARGET_CPUS = ("auto", "vnni", "avx512", "avx2", "arm64")
DEFAULT_CALIBRATION_SIZE = 300  # what NNCF and Ultralytics calibrate on
DEFAULT_GATE_SIZE = 500
MAX_IMAGES = 100_000  # calibration or gate images: a bound on what one option may ask for
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")  # the layers that can be kept in fp32


@dataclass(frozen=True)
class QuantizeOptions:
    calibration: str | None = None  # data argument; None: the checkpoint's training data
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    method: str = "minmax"
    gate_data: str | None = None  # None: the held-out side of the calibration data
    gate_size: int = DEFAULT_GATE_SIZE
    max_agreement_loss: float = 0.01
    max_accuracy_drop: float = 0.01
    target_cpu: str = "auto"
    max_fp32_layers: int | None = None  # the fallback keeps at most this many layers in fp32 (None: any)
    force: bool = False  # write even when no step passes the gate (the failure is recorded)

    def check(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ExportError(f"unknown calibration method {self.method!r}; choose {', '.join(CALIBRATION_METHODS)}")
        if self.target_cpu not in TARGET_CPUS:
            raise ExportError(f"unknown target CPU {self.target_cpu!r}; choose {', '.join(TARGET_CPUS)}")
        for name in ("calibration_size", "gate_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES:
                raise ExportError(f"{name} must be an integer from 1 to {MAX_IMAGES:,}, got {value!r}")
        if self.max_fp32_layers is not None and not 0 <= self.max_fp32_layers <= 1_000:
            raise ExportError(f"max_fp32_layers must be from 0 to 1,000, got {self.max_fp32_layers!r}")
        for name in ("max_agreement_loss", "max_accuracy_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ExportError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Scheme:
    """onnxruntime's guidance per CPU (quantize_static's docstring): u8 activations and s8 weights on
    x86, s8/s8 on ARM; QDQ; per-channel weights. reduce_range (7-bit weights) is a gate step."""

    activation_type: str
    weight_type: str = "int8"
    reduce_range: bool = False
    per_channel: bool = True
    format: str = "QDQ"

    @classmethod
    def for_target(cls, target: str) -> Scheme:
        return cls(activation_type="int8" if target == "arm64" else "uint8")


@dataclass(frozen=True)
class Step:
    label: str
    reduce_range: bool
    fp32_layers: tuple[str, ...]
    gate: GateResult
    path: Path  # the attempt's model, in the export's scratch folder


def resolve_target(target_cpu: str, echo: Callable[[str], None]) -> str:
    target = detect_cpu() if target_cpu == "auto" else target_cpu
    if target == "other":
        echo(
            "warning: this CPU has no fast int8 instructions (no AVX2, AVX-512, VNNI or ARM64): the int8 "
            "model may run slower than fp32 here; pass --target-cpu for the machine it will run on"
        )
    return target


def training_seed(training: dict[str, Any] | None) -> int:
    """The seed the checkpoint trained with: it fixes which images the synthetic and folder splits hold."""
    seed = ((training or {}).get("args") or {}).get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def calibration_source(options: QuantizeOptions, training: dict[str, Any] | None) -> str:
    if options.calibration:
        return options.calibration
    data = ((training or {}).get("args") or {}).get("data")
    if not isinstance(data, str) or not data:
        raise ExportError(
            "the checkpoint names no training data to calibrate on: pass --calibration DIR (or synthetic)"
        )
    return data


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over streamed, preprocessed batches."""

    def __init__(self, batches, input_name: str) -> None:
        self._batches, self._input_name = batches, input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch[0]}


def quantize_model(
    fp32_path: Path, output: Path, reader: Any, *, scheme: Scheme, method: str, cache: Path, exclude: tuple[str, ...]
) -> None:
    """One quantize_static call; activation ranges come from `cache` once it exists."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    methods["percentile"] = CalibrationMethod.Percentile
    quantize_static(
        str(fp32_path),
        str(output),
        calibration_data_reader=reader,
        quant_format=QuantFormat.QDQ,
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        activation_type=types[scheme.activation_type],
        weight_type=types[scheme.weight_type],
        nodes_to_exclude=list(exclude),
        calibrate_method=methods[method],
        calibration_cache_path=str(cache),
        # No CalibMaxIntermediateOutputs: onnxruntime (to 1.32 at least) drops each full group of that
        # many batches without merging its ranges (microsoft/onnxruntime#18893), so a multiple of it
        # failed ("No data is collected.") and any other count calibrated on the remainder alone.
        # It saves nothing here: per batch the calibrator keeps one min and one max per tensor.
    )


def layer_names(onnx_path: Path) -> dict[str, str]:
    """Quantizable node name -> the checkpoint layer it computes ("features.0"), from its weight's name."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    names = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            weight = next((i for i in node.input[1:] if i in weights), node.name)
            names[node.name] = weight.removesuffix(".weight")
    return names


def embed_metadata(path: Path, metadata: ArtifactMetadata) -> Any:
    """The quantized model proto with the artifact's metadata (replacing the fp32 model's)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    proto.producer_name = "alexnet-deploy"
    return proto


def quantization_record(
    scheme: Scheme, step: Step, target: str, calibration_info: dict[str, Any], forced: bool
) -> dict[str, Any]:
    gate = step.gate.to_dict() | {"forced": forced and not step.gate.passed, "step": step.label}
    return {
        "scheme": dataclasses.asdict(dataclasses.replace(scheme, reduce_range=step.reduce_range)),
        "calibration": calibration_info,
        "gate": gate,
        "fp32_layers": list(step.fp32_layers),
        "target_cpu": target,
        "target_description": DESCRIPTIONS[target],
    }


def gate_failure(steps: list[Step]) -> str:
    best = max(steps, key=lambda s: (s.gate.agreement, -s.gate.logit_error))
    return (
        f"the int8 model fails the accuracy gate at every step; best ({best.label}): {best.gate.summary()}; "
        "nothing written (--force writes it anyway, recording the failure)"
    )


def fp32_logits(model: Any, inputs: np.ndarray) -> np.ndarray:
    import torch

    from export.gate import BATCH, gate_progress

    with torch.inference_mode():
        starts = gate_progress(range(0, len(inputs), BATCH), "gate: fp32 PyTorch")
        parts = [model(torch.from_numpy(inputs[i : i + BATCH])).numpy() for i in starts]
    return np.concatenate(parts)


def read_gate(images: calibration.ImageSet, spec, limit: int, model: Any) -> GateData:
    """Preprocess up to `limit` gate images (skipping unreadable ones) and run fp32 on them."""
    log = calibration.ReadLog()
    inputs, labels = [], []
    for batch, batch_labels in calibration.batches(
        images, spec, limit=limit, batch_size=64, log=log, desc="gate images"
    ):
        inputs.append(batch)
        labels += [-1 if label is None else label for label in batch_labels]
    if not inputs:
        raise ExportError(f"no readable gate images in {images.description} ({log.first_error or 'none found'})")
    stacked = np.concatenate(inputs)
    return GateData(stacked, np.asarray(labels, np.int64), fp32_logits(model, stacked), images.description)


__all__ = ["QuantizeOptions", "Scheme", "Step", "CALIBRATION_METHODS", "TARGET_CPUS", "first_line"]
