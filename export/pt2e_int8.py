"""Checkpoint -> int8 ExecuTorch (.pte) or LiteRT (.tflite): PT2E static quantization behind the
same accuracy gate as int8 ONNX and OpenVINO.

Data flow as export/to_onnx_int8.py: calibration images from the checkpoint's training data (or
--calibration), the gate on held-out images against the fp32 PyTorch logits (export/gate.py, the
same thresholds). Steps: the edge-ready model (export/torch_export.py) exported with a free batch
-> the format's PT2E quantizer observes the calibration images -> converted -> lowered by the
format's writer (export/to_executorch.py, export/to_litert.py) -> the saved attempt is gated
through the runtime backend that alexnet-run uses. When the gate fails, the most sensitive
Conv2d/Linear layers stay fp32 (the quantizer's set_module_name(name, None)), one more per step
(export/fallback.py). Nothing reaches the output unless a step passes (or `force`, which records
the failure).

Activation ranges come from the quantizers' own observer (HistogramObserver: the range with the
least L2 quantization error); --calibration-method (onnxruntime's and NNCF's estimators) is not
theirs to take, so only its default is accepted.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from torch import nn

from export import calibration
from export.common import ExportError
from export.fallback import LayerSearch
from export.gate import GateData, judge, run_artifact
from export.quantize import QuantizeOptions, Step, calibration_source, gate_failure, read_gate, training_seed
from export.to_onnx_int8 import probe_calibration, scratch_dir
from export.torch_export import CALIBRATION_BATCH, edge_ready, quantizable_layers, quantize_pt2e
from runtime import formats
from runtime.metadata import ArtifactMetadata

DEFAULT_METHOD = QuantizeOptions().method


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def export_int8_pt2e(
    writer: ModuleType,
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    *,
    options: QuantizeOptions,
    training: dict[str, Any] | None,
    echo: Callable[[str], None] = _stderr,
) -> Path:
    """Quantize `model` (fp32, eval) for `writer`'s format (export.to_executorch or export.to_litert)
    to `output`; ExportError when the gate fails at every step (unless options.force)."""
    options.check()
    if options.method != DEFAULT_METHOD:
        raise ExportError(
            f"--calibration-method {options.method} is for onnx and openvino; {writer.FORMAT.title}'s PT2E quantizer "
            "sets activation ranges with its own histogram observer"
        )
    names, spec = metadata.class_names, metadata.preprocess
    calib_set, gate_set = calibration.resolve_calibration(
        calibration_source(options, training), options.gate_data, names, spec, seed=training_seed(training)
    )
    inputs, info = read_calibration(calib_set, spec, options, echo)
    gate = read_gate(gate_set, spec, options.gate_size, model)
    metadata = dataclasses.replace(metadata, format=writer.FORMAT.name, precision="int8")
    with scratch_dir() as scratch:
        search = _Search(writer, Path(scratch), inputs, info, gate, options, metadata, echo)
        search.prepare(model)
        steps = search.run_steps()
        chosen = next((s for s in steps if s.gate.passed), None)
        if chosen is None and not options.force:
            raise ExportError(gate_failure(steps))
        chosen = chosen or search.closest
        if not chosen.gate.passed:
            echo(f"warning: the gate FAILED ({chosen.gate.summary()}); written anyway because of --force")
        final = dataclasses.replace(search.metadata, quantization=quantization_record(writer, chosen, info, options))
        search.write(search.modules[chosen.path], final, output)
    return output


def read_calibration(
    images: calibration.ImageSet, spec, options: QuantizeOptions, echo: Callable[[str], None]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The calibration batches, each (<= CALIBRATION_BATCH, 3, crop, crop) float32, and what the
    record says of them; one-line ExportError when none is readable."""
    probe_calibration(images, spec, options.calibration_size, echo)
    log = calibration.ReadLog()
    limit = min(options.calibration_size, images.count)
    inputs = [
        b
        for b, _ in calibration.batches(
            images, spec, limit=limit, batch_size=CALIBRATION_BATCH, log=log, desc="calibration images"
        )
    ]
    if log.skipped:
        echo(f"skipped {log.skipped} unreadable calibration images (first: {log.first_error})")
    info = {"method": "histogram", "images": log.read, "skipped": log.skipped, "source": images.description}
    return inputs, info


def quantization_record(writer: ModuleType, step: Step, info: dict[str, Any], options: QuantizeOptions) -> dict:
    """The int8 artifact's `quantization` metadata, shaped as the int8 ONNX one (export/quantize.py)."""
    quantizer = type(writer.quantizer())
    scheme = {
        "quantizer": f"{quantizer.__module__.split('.')[0]} {quantizer.__name__} (PT2E)",
        "weights": "int8 per-channel symmetric",
        "activations": "int8 static",
        "activation_ranges": "histogram",
    }
    return {
        "scheme": scheme,
        "calibration": info,
        "gate": step.gate.to_dict() | {"forced": options.force and not step.gate.passed, "step": step.label},
        "fp32_layers": list(step.fp32_layers),
    }


def run_attempt(path: Path, inputs: np.ndarray, backend: str) -> np.ndarray:
    """Logits of a saved attempt through the runtime's `backend` (what alexnet-run runs)."""
    return run_artifact(path, inputs, backend)


class _Search(LayerSearch):
    """The scratch folder of one int8 export: the attempts' files, and the quantized modules of the
    steps still kept (the chosen one is written again with the final metadata)."""

    def __init__(self, writer, root: Path, inputs, info, gate: GateData, options, metadata, echo) -> None:
        self.writer, self.root, self.inputs, self.info, self.gate = writer, root, inputs, info, gate
        self.options, self.echo = options, echo
        self.fmt: formats.Format = writer.FORMAT
        self.metadata = _batch_shape(writer, metadata)
        self.modules: dict[Path, nn.Module] = {}
        self._attempts = 0

    def prepare(self, model: nn.Module) -> None:
        self.model = edge_ready(model, self.metadata.input_shape[2])
        self.layers = quantizable_layers(self.model)

    def quantize(self, exclude: tuple[str, ...]) -> tuple[nn.Module, Any]:
        quantizer = self.writer.quantizer(exclude)
        size = self.metadata.input_shape[2]
        return quantize_pt2e(self.model, quantizer, self.inputs, size, fold=self.writer.FOLD_QUANTIZE), quantizer

    def write(self, quantized: tuple[nn.Module, Any], metadata: ArtifactMetadata, path: Path) -> None:
        module, quantizer = quantized
        if self.fmt.name == "litert":
            self.writer.write(module, metadata, path, pt2e_quantizer=quantizer)
        else:
            self.writer.write(module, metadata, path)

    def attempt(self, label: str, exclude: tuple[str, ...]) -> Step:
        """Quantize with these layers kept fp32, lower, save, gate the saved file, report the step."""
        self._attempts += 1
        path = self.root / f"attempt-{self._attempts}{self.fmt.suffix}"
        quantized = self.quantize(exclude)
        if self._attempts == 1:
            self.echo(f"calibrated on {self.info['images']} images from {self.info['source']} (PT2E, histogram)")
        self.write(quantized, self.metadata, path)
        self.modules[path] = quantized
        logits = run_attempt(path, self.gate.inputs, self.fmt.backend)
        result = judge(
            self.gate,
            logits,
            max_agreement_loss=self.options.max_agreement_loss,
            max_accuracy_drop=self.options.max_accuracy_drop,
        )
        return Step(label, False, exclude, result, path)

    def run_steps(self) -> list[Step]:
        """Attempts in order until one passes: all int8; then the most sensitive layers kept fp32."""
        steps = [self.report(self.attempt("all layers int8", ()))]
        return steps if steps[-1].gate.passed else self.keep_layers_fp32(steps, self.options.max_fp32_layers)

    def discard(self, step: Step) -> None:
        self.modules.pop(step.path, None)
        step.path.unlink(missing_ok=True)


def _batch_shape(writer: ModuleType, metadata: ArtifactMetadata) -> ArtifactMetadata:
    """The int8 artifact's batch: LiteRT's fixed one, ExecuTorch's dynamic one with its per-call limit."""
    if writer.FORMAT.fixed_batch:
        return writer.fixed_batch(metadata)
    return writer.with_batch_limit(dataclasses.replace(metadata, input_shape=(None, *metadata.input_shape[1:])))
