"""Checkpoint -> int8 ONNX: calibrate, quantize, gate, fall back layer by layer, write (see export/quantize.py)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from export import calibration
from export.common import ExportError, example_input, first_line
from export.fallback import LayerSearch
from export.gate import GateData, judge, run_onnx
from export.quantize import (
    CalibrationReader,
    QuantizeOptions,
    Scheme,
    Step,
    calibration_source,
    embed_metadata,
    gate_failure,
    layer_names,
    quantization_record,
    quantize_model,
    read_gate,
    resolve_target,
    training_seed,
)
from export.to_onnx import write_checked
from runtime import outputs
from runtime.metadata import ArtifactMetadata

CALIBRATION_BATCH = 16
SCRATCH_PREFIX = "alexnet-int8-"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def export_int8_onnx(
    model: nn.Module,
    metadata: ArtifactMetadata,
    output: Path,
    *,
    options: QuantizeOptions,
    training: dict[str, Any] | None,
    opset: int = 18,
    echo: Callable[[str], None] = _stderr,
) -> Path:
    """Quantize `model` (fp32, eval) to `output`; ExportError when the gate fails (unless options.force)."""
    options.check()
    target = resolve_target(options.target_cpu, echo)
    scheme = Scheme.for_target(target)
    data = calibration_source(options, training)
    seed = training_seed(training)
    names, spec = metadata.class_names, metadata.preprocess
    calib_set, gate_set = calibration.resolve_calibration(data, options.gate_data, names, spec, seed=seed)
    probe_calibration(calib_set, spec, options.calibration_size, echo)
    gate = read_gate(gate_set, spec, options.gate_size, model)
    with scratch_dir() as scratch:
        work = _Workspace(Path(scratch), calib_set, spec, options, scheme, gate, echo)
        work.prepare(model, metadata, opset)
        steps = work.run_steps(target)
        chosen = next((s for s in steps if s.gate.passed), None)
        if chosen is None and not options.force:
            raise ExportError(gate_failure(steps))
        chosen = chosen or work.closest
        if not chosen.gate.passed:
            echo(f"warning: the gate FAILED ({chosen.gate.summary()}); written anyway because of --force")
        record = quantization_record(scheme, chosen, target, work.calibration_info, options.force)
        final = dataclasses.replace(metadata, precision="int8", quantization=record)
        _write(chosen.path, final, output, chosen.path.stat().st_size)
    return output


def scratch_dir() -> tempfile.TemporaryDirectory:
    """A scratch folder for the fp32 model and the attempts (hundreds of MB at 224 px), removed
    afterwards; folders left by a killed export (their pid is gone) are removed first."""
    root = Path(tempfile.gettempdir())
    for stale in root.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = stale.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not outputs.process_running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def probe_calibration(images: calibration.ImageSet, spec, size: int, echo: Callable[[str], None]) -> None:
    """Fail in one line before any heavy work when no calibration image is readable."""
    if images.count == 0:
        raise ExportError(f"no calibration images in {images.description}")
    log = calibration.ReadLog()
    first = next(calibration.batches(images, spec, limit=1, batch_size=1, log=log), None)
    if first is None:
        raise ExportError(
            f"none of the {images.count} calibration images in {images.description} is readable ({log.first_error})"
        )
    if images.count < size:
        echo(
            f"warning: {images.description} has {images.count} images, fewer than the {size} asked for; using them all"
        )
    echo(f"calibrating on {min(size, images.count)} images from {images.description}, then gating ...")


class _Workspace(LayerSearch):
    """The scratch folder of one int8 export: fp32 model, cached activation ranges, attempts."""

    def __init__(self, root: Path, calib_set, spec, options: QuantizeOptions, scheme: Scheme, gate: GateData, echo):
        self.root, self.calib_set, self.spec, self.options = root, calib_set, spec, options
        self.scheme, self.gate, self.echo = scheme, gate, echo
        self.fp32 = root / "fp32.onnx"
        self.cache = root / "ranges.json"
        self.calibration_info: dict[str, Any] = {}
        self._attempts = 0
        self.reduce_range = False  # 7-bit weights, once run_steps chose them

    def prepare(self, model: nn.Module, metadata: ArtifactMetadata, opset: int) -> None:
        """fp32 ONNX (dynamic batch, so calibration can batch) -> quant_pre_process."""
        from onnxruntime.quantization import quant_pre_process

        from export.to_onnx import export_onnx

        raw = self.root / "raw.onnx"
        # No weights hash: quantization changes the graph, and the attempts carry this metadata
        # (the final model is stamped when written).
        export_onnx(model, example_input(None, metadata.input_shape[2]), metadata, raw, opset=opset, weights_hash=False)
        try:
            quant_pre_process(str(raw), str(self.fp32), skip_symbolic_shape=True)
        except Exception as exc:  # onnxruntime raises whatever its optimizer raises
            raise ExportError(f"onnxruntime's quantization pre-processing failed: {first_line(exc)}") from exc
        raw.unlink()
        self.layers = layer_names(self.fp32)

    def attempt(self, label: str, exclude: tuple[str, ...], *, reduce_range: bool | None = None) -> Step:
        """Quantize with these settings (default: self.reduce_range), gate the result, return the step."""
        reduce_range = self.reduce_range if reduce_range is None else reduce_range
        self._attempts += 1
        path = self.root / f"attempt-{self._attempts}.onnx"
        scheme = dataclasses.replace(self.scheme, reduce_range=reduce_range)
        reader = None if self.cache.exists() else self._calibration_reader()
        try:
            quantize_model(
                self.fp32, path, reader, scheme=scheme, method=self.options.method, cache=self.cache, exclude=exclude
            )
        except Exception as exc:  # onnxruntime.quantization raises bare exceptions
            raise ExportError(f"int8 quantization failed: {first_line(exc)}") from exc
        if reader is not None:
            self._finish_calibration(reader)
        result = judge(
            self.gate,
            run_onnx(path, self.gate.inputs),
            max_agreement_loss=self.options.max_agreement_loss,
            max_accuracy_drop=self.options.max_accuracy_drop,
        )
        layers = tuple(self.layers[n] for n in exclude)
        return Step(label, reduce_range, layers, result, path)

    def _calibration_reader(self) -> CalibrationReader:
        self._log = calibration.ReadLog()
        limit = min(self.options.calibration_size, self.calib_set.count)
        batches = calibration.batches(
            self.calib_set,
            self.spec,
            limit=limit,
            # The histogram calibrators (entropy, percentile) stack per-run outputs: every run one image.
            batch_size=CALIBRATION_BATCH if self.options.method == "minmax" else 1,
            log=self._log,
            desc="calibrating",
        )
        return CalibrationReader(batches, "input")

    def _finish_calibration(self, reader: CalibrationReader) -> None:
        used = self._log.read
        if self._log.skipped:
            self.echo(f"skipped {self._log.skipped} unreadable calibration images (first: {self._log.first_error})")
        self.calibration_info = {
            "method": self.options.method,
            "images": used,
            "skipped": self._log.skipped,
            "source": self.calib_set.description,
        }
        self.echo(f"calibrated on {used} images from {self.calib_set.description} ({self.options.method})")

    def run_steps(self, target: str) -> list[Step]:
        """Attempts in order until one passes: all int8; 7-bit weights (x86 without VNNI); layers kept in fp32."""
        steps = [self.report(self.attempt("all layers int8", (), reduce_range=False))]
        if steps[-1].gate.passed:
            return steps
        if target in ("avx2", "avx512"):
            steps.append(self.report(self.attempt("7-bit weights (reduce_range)", (), reduce_range=True)))
            if steps[-1].gate.passed:
                return steps
            self.reduce_range = steps[-1].gate.logit_error < steps[0].gate.logit_error
        return self.keep_layers_fp32(steps, self.options.max_fp32_layers)

    def discard(self, step: Step) -> None:
        step.path.unlink(missing_ok=True)


def _write(path: Path, metadata: ArtifactMetadata, output: Path, expected_bytes: int) -> None:
    write_checked(embed_metadata(path, metadata), output, "the int8 ONNX model", expected_bytes)
