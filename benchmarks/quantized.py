"""int8 artifacts for the benchmark: the options of `export`'s int8 ONNX, and OpenVINO's peer made by NNCF.

Both quantizers calibrate on the same images: the first CALIBRATION_SIZE images of the synthetic
train split, preprocessed with the artifact's own settings, read through `export.calibration`
exactly as export's int8 exporter reads them. Few images, because the benchmark measures speed:
the scales they give change the accuracy, not the kernels that run.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.artifacts import Source, import_optional

CALIBRATION_SIZE = 32  # images, for export's int8 ONNX and for NNCF alike
GATE_SIZE = 32  # images export compares int8 with fp32 on (its accuracy gate)


def quantize_options(source: Source) -> Any:
    """`export.quantize.QuantizeOptions` for the benchmark's int8 ONNX of `source`.

    force=True: the artifact is written whatever export's accuracy gate says (the verdict is
    recorded in it). A freshly initialized model's gate is also opened wide (max loss 1.0): its
    predictions are arbitrary, so the gate would pass or fail by chance, and a failure sends
    export into keeping layers in fp32; what a fresh model stands for is the all-int8 artifact.
    A user's checkpoint keeps export's thresholds: its rows time what `alexnet-export` would ship.
    """
    from export.quantize import QuantizeOptions

    wide = {} if source.given else {"max_agreement_loss": 1.0, "max_accuracy_drop": 1.0}
    return QuantizeOptions(
        calibration="synthetic", calibration_size=CALIBRATION_SIZE, gate_size=GATE_SIZE, force=True, **wide
    )


def preprocess_spec(source: Source) -> Any:
    """The checkpoint's preprocessing at the benchmarked input size (what export writes into the artifact)."""
    from export.common import preprocess_for_size

    return preprocess_for_size(source.checkpoint.preprocess, source.image_size)


def calibration_inputs(source: Source, count: int | None = None) -> list[np.ndarray]:
    """The first `count` (default CALIBRATION_SIZE) calibration inputs of export's int8 exporter for
    `calibration="synthetic"`, each (1, 3, H, W) float32."""
    from export import calibration
    from export.quantize import training_seed

    count = CALIBRATION_SIZE if count is None else count
    spec = preprocess_spec(source)
    checkpoint = source.checkpoint
    seed = training_seed(checkpoint.training)  # as export/to_onnx_int8.py seeds it
    images, _held_out = calibration.resolve_sets("synthetic", checkpoint.class_names, spec, seed=seed)
    log = calibration.ReadLog()
    return [batch for batch, _ in calibration.batches(images, spec, limit=count, batch_size=1, log=log)]


def nncf_export(onnx_path: Path, source: Source, output: Path) -> Path:
    """The fp32 ONNX quantized by NNCF for OpenVINO on the CPU, saved as an OpenVINO IR (`output`, .xml + .bin)."""
    ov, nncf = import_optional("openvino"), import_optional("nncf")
    model = ov.Core().read_model(str(onnx_path))
    inputs = calibration_inputs(source)
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:  # quiet: nncf logs and draws progress bars on stdout, which may carry the --json report
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                model, nncf.Dataset(inputs), subset_size=len(inputs), target_device=nncf.TargetDevice.CPU
            )
    finally:
        logger.setLevel(level)
    # fp32 for the constants left unquantized: the IR is exactly what NNCF computed (int8 weights stay int8).
    ov.save_model(quantized, str(output), compress_to_fp16=False)
    return output
