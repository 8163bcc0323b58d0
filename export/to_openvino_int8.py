"""Checkpoint -> int8 OpenVINO IR: NNCF post-training quantization behind the same accuracy gate as int8 ONNX.

Data flow as export/to_onnx_int8.py: calibration images from the checkpoint's training data (or
--calibration), the gate on held-out images against the fp32 PyTorch logits (export/gate.py, the
same thresholds). Steps: the fp32 IR (from the ONNX export) -> nncf.quantize (preset PERFORMANCE:
symmetric int8 weights and activations, CPU) -> gate, on the attempt saved and run through
`runtime.load(..., backend="openvino")`. When the gate fails, each Convolution/MatMul's sensitivity
is measured (the gate's logit error with that layer alone kept in fp32 through nncf.IgnoredScope)
and the most sensitive layers stay fp32, one more per step, until a step passes. Nothing reaches
the output unless a step passes (or `force`, which records the failure).

NNCF collects activation statistics again on every attempt (its statistics cache is for weight
compression only); the calibration images are kept in memory for that, preprocessed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from export import calibration
from export.common import ExportError, example_input, quiet_logger
from export.fallback import LayerSearch
from export.gate import GateData, judge, run_artifact
from export.quantize import QuantizeOptions, Step, calibration_source, gate_failure, read_gate, training_seed
from export.to_onnx_int8 import probe_calibration, scratch_dir
from export.to_openvino import XML_SUFFIX, check_ir_output, convert_pytorch, remove_ir, write_ir
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.openvino_ir import openvino_reason
from runtime.signal_stack import kept_signal_stack

QUANTIZABLE_OPS = ("Convolution", "MatMul")  # the layers that can be kept in fp32
# --calibration-method -> NNCF's activation range estimators: strict min/max over every image (as
# onnxruntime's minmax), histogram-based error minimization, mean of per-image quantiles.
RANGE_ESTIMATORS = {"minmax": "MINMAX", "entropy": "HISTOGRAM", "percentile": "MEAN_QUANTILE"}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def export_int8_openvino(
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    *,
    options: QuantizeOptions,
    training: dict[str, Any] | None,
    opset: int = 18,
    echo: Callable[[str], None] = _stderr,
) -> Path:
    """Quantize `model` (fp32, eval) to an int8 IR at `output`; ExportError when the gate fails (unless options.force)."""
    options.check()
    check_ir_output(output)
    data = calibration_source(options, training)
    names, spec = metadata.class_names, metadata.preprocess
    calib_set, gate_set = calibration.resolve_calibration(
        data, options.gate_data, names, spec, seed=training_seed(training)
    )
    inputs, info = read_calibration(calib_set, spec, options, echo)
    gate = read_gate(gate_set, spec, options.gate_size, model)
    # Attempts carry the artifact's metadata (not yet the record), so the runtime loads them as it will the IR.
    metadata = dataclasses.replace(
        metadata, format="openvino", precision="int8", input_shape=(None, *metadata.input_shape[1:])
    )
    with scratch_dir() as scratch:
        search = _Search(Path(scratch), inputs, info, gate, options, metadata, echo)
        search.prepare(model, opset)
        steps = search.run_steps()
        chosen = next((s for s in steps if s.gate.passed), None)
        if chosen is None and not options.force:
            raise ExportError(gate_failure(steps))
        chosen = chosen or search.closest
        if not chosen.gate.passed:
            echo(f"warning: the gate FAILED ({chosen.gate.summary()}); written anyway because of --force")
        final = dataclasses.replace(metadata, quantization=quantization_record(chosen, info, options.force))
        write_ir(output, final, lambda _folder: read_ir(chosen.path))
    return output


def read_calibration(
    images: calibration.ImageSet, spec, options: QuantizeOptions, echo: Callable[[str], None]
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The calibration inputs, each (1, 3, crop, crop) float32 (NNCF feeds dataset items one by one),
    and what the record says of them; one-line ExportError when none is readable."""
    if options.method not in RANGE_ESTIMATORS:
        raise ExportError(f"unknown calibration method {options.method!r}; choose {', '.join(RANGE_ESTIMATORS)}")
    probe_calibration(images, spec, options.calibration_size, echo)  # none readable: one line, before the work
    log = calibration.ReadLog()
    limit = min(options.calibration_size, images.count)
    inputs = [
        batch
        for batch, _ in calibration.batches(images, spec, limit=limit, batch_size=1, log=log, desc="calibration images")
    ]
    if log.skipped:
        echo(f"skipped {log.skipped} unreadable calibration images (first: {log.first_error})")
    info = {"method": options.method, "images": log.read, "skipped": log.skipped, "source": images.description}
    return inputs, info


def quantization_record(step: Step, calibration_info: dict[str, Any], forced: bool) -> dict[str, Any]:
    """The int8 IR's `quantization` metadata, shaped as the int8 ONNX one (export/quantize.py)."""
    import nncf

    estimator = RANGE_ESTIMATORS[calibration_info["method"]]
    scheme = {"quantizer": f"nncf {nncf.__version__}", "preset": "performance", "target_device": "CPU"}
    return {
        "scheme": scheme | {"activation_ranges": estimator.lower()},
        "calibration": calibration_info,
        "gate": step.gate.to_dict() | {"forced": forced and not step.gate.passed, "step": step.label},
        "fp32_layers": list(step.fp32_layers),
    }


def layer_names(model: Any) -> dict[str, str]:
    """Quantizable op (its friendly name, what nncf.IgnoredScope takes) -> the checkpoint layer it
    computes ("features.0"), from its weight constant's name; the op's own name where there is none."""
    names = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in QUANTIZABLE_OPS:
            weight = op.input_value(1).get_node()  # (out, in, kh, kw) or (out, in) for a MatMul
            readable = weight.get_friendly_name() if weight.get_type_name() == "Constant" else op.get_friendly_name()
            names[op.get_friendly_name()] = readable.removesuffix(".weight")
    return names


def quantize_ir(fp32: Any, inputs: list[np.ndarray], *, method: str, exclude: tuple[str, ...]) -> Any:
    """nncf.quantize of (a copy of) the fp32 ov.Model, the `exclude`d ops left fp32."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimator = getattr(RangeEstimatorParametersSet, RANGE_ESTIMATORS[method])
    try:
        # NNCF compiles the model to collect statistics: keep this thread's signal stack (runtime/signal_stack.py).
        with _quiet_nncf(), kept_signal_stack():
            return nncf.quantize(
                fp32.clone(),
                nncf.Dataset(inputs),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                target_device=nncf.TargetDevice.CPU,
                subset_size=len(inputs),
                ignored_scope=nncf.IgnoredScope(names=list(exclude)) if exclude else None,
                advanced_parameters=AdvancedQuantizationParameters(activations_range_estimator_params=estimator),
            )
    except Exception as exc:  # NNCF raises its own errors, and OpenVINO's RuntimeError from inference
        raise ExportError(f"int8 quantization (NNCF) failed: {openvino_reason(exc)}") from exc


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs through its own stdout handler and draws progress bars on stdout (which may carry
    a --json report): both silenced for the call, the logger's level restored after."""
    with quiet_logger("nncf"), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def read_ir(xml: Path) -> Any:
    import openvino as ov

    try:
        return ov.Core().read_model(str(xml))
    except Exception as exc:
        raise ExportError(f"OpenVINO cannot read back {xml.name}: {openvino_reason(exc)}") from exc


def run_ir(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of an IR through the runtime's own backend (what alexnet-run runs)."""
    return run_artifact(path, inputs, "openvino")


class _Search(LayerSearch):
    """The scratch folder of one int8 export: the fp32 model, the attempts, the closest failure."""

    def __init__(self, root: Path, inputs, info, gate: GateData, options: QuantizeOptions, metadata, echo) -> None:
        self.root, self.inputs, self.info, self.gate, self.options = root, inputs, info, gate, options
        self.metadata, self.echo = metadata, echo
        self._attempts = 0

    def prepare(self, model: nn.Module, opset: int) -> None:
        """The fp32 ov.Model (dynamic batch) and its quantizable layers."""
        example = example_input(None, self.metadata.input_shape[2])
        fp32 = dataclasses.replace(self.metadata, precision="fp32")  # what the intermediate ONNX holds
        self.fp32 = convert_pytorch(model, fp32, self.root, opset=opset, example=example)
        self.layers = layer_names(self.fp32)

    def attempt(self, label: str, exclude: tuple[str, ...]) -> Step:
        """Quantize with these ops kept fp32, save, gate the saved IR, report the step."""
        import openvino as ov

        self._attempts += 1
        path = self.root / f"attempt-{self._attempts}{XML_SUFFIX}"
        quantized = quantize_ir(self.fp32, self.inputs, method=self.options.method, exclude=exclude)
        if self._attempts == 1:
            self.echo(
                f"calibrated on {self.info['images']} images from {self.info['source']} ({self.options.method}, NNCF)"
            )
        quantized.set_rt_info(self.metadata.to_json(), [METADATA_KEY])
        try:
            ov.save_model(quantized, str(path), compress_to_fp16=False)
        except Exception as exc:
            raise ExportError(f"OpenVINO could not save an int8 attempt: {openvino_reason(exc)}") from exc
        result = judge(
            self.gate,
            run_ir(path, self.gate.inputs),
            max_agreement_loss=self.options.max_agreement_loss,
            max_accuracy_drop=self.options.max_accuracy_drop,
        )
        return Step(label, False, tuple(self.layers[n] for n in exclude), result, path)

    def run_steps(self) -> list[Step]:
        """Attempts in order until one passes: all int8; then the most sensitive layers kept fp32."""
        steps = [self.report(self.attempt("all layers int8", ()))]
        return steps if steps[-1].gate.passed else self.keep_layers_fp32(steps, self.options.max_fp32_layers)

    def discard(self, step: Step) -> None:
        remove_ir(step.path)
