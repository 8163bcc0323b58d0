"""The accuracy gate of an int8 Core ML package: its predictions on held-out images, made by the
Core ML reference evaluator (runtime.mlprogram), against the fp32 checkpoint's (export/gate.py).

Core ML int8 is weight-only (per-channel int8, fp16 compute), so there is nothing to calibrate and
no fallback: the package passes the gate as converted, or is not written (unless --force, which
records the failure). Gate images are --gate-data, else the held-out side of the checkpoint's
training data; a checkpoint that names none (and no --gate-data) is gated by its weights alone,
and the export says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from export import calibration
from export.common import ExportError
from export.gate import BATCH, GateResult, judge
from export.quantize import QuantizeOptions, read_gate, training_seed
from runtime.metadata import ArtifactMetadata

EVALUATOR = "coreml-reference"


def gate_images(options: QuantizeOptions, training: dict[str, Any] | None, metadata: ArtifactMetadata):
    """The held-out ImageSet to gate on, or None when neither --gate-data nor the checkpoint names one."""
    names, spec, seed = metadata.class_names, metadata.preprocess, training_seed(training)
    if options.gate_data:
        return calibration.resolve_gate_set(options.gate_data, names, spec, seed=seed)
    data = ((training or {}).get("args") or {}).get("data")
    if not isinstance(data, str) or not data:
        return None
    return calibration.resolve_sets(data, names, spec, seed=seed)[1]


def package_logits(spec: Any, program: Any, metadata: ArtifactMetadata, inputs: np.ndarray) -> np.ndarray:
    """The unsaved package's logits (its spec and MIL program) on preprocessed `inputs` (N, 3, S, S),
    by the reference evaluator."""
    from runtime.backends.coreml_reference_backend import CoreMLReferenceBackend

    backend = CoreMLReferenceBackend.from_program(spec, program, "the int8 Core ML package")
    backend.configure(metadata)
    return np.concatenate([backend.run(inputs[i : i + BATCH]) for i in range(0, len(inputs), BATCH)])


def gate_int8(
    spec: Any,
    program: Any,
    model: nn.Module,
    metadata: ArtifactMetadata,
    options: QuantizeOptions,
    training: dict[str, Any] | None,
    echo: Callable[[str], None],
) -> GateResult | None:
    """Run the gate (None when there are no gate images); ExportError when it fails, unless forced."""
    options.check()
    images = gate_images(options, training, metadata)
    if images is None:
        echo(
            "warning: no gate images (the checkpoint names no training data): the int8 Core ML package is "
            "checked by its weights only; pass --gate-data DIR (or synthetic) to gate its predictions"
        )
        return None
    gate = read_gate(images, metadata.preprocess, options.gate_size, model)
    result = judge(
        gate,
        package_logits(spec, program, metadata, gate.inputs),
        max_agreement_loss=options.max_agreement_loss,
        max_accuracy_drop=options.max_accuracy_drop,
    )
    echo(f"  gate [{EVALUATOR}]: {result.summary()}")
    if not result.passed and not options.force:
        raise ExportError(
            f"the int8 Core ML package fails the accuracy gate: {result.summary()}; nothing written "
            "(--force writes it anyway, recording the failure)"
        )
    if not result.passed:
        echo(f"warning: the gate FAILED ({result.summary()}); written anyway because of --force")
    return result
