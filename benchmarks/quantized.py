"""The options of the benchmark's int8 exports: int8 ONNX and int8 OpenVINO IR alike.

Both are `export`'s own gated int8 exporters (`alexnet-export --precision int8`), asked for with
the same `QuantizeOptions`: calibration on the first CALIBRATION_SIZE images of the synthetic
train split, preprocessed with the artifact's own settings, and the gate on GATE_SIZE held-out
ones. Few images, because the benchmark measures speed: the scales they give change the
accuracy, not the kernels that run.
"""

from __future__ import annotations

from typing import Any

from benchmarks.artifacts import Source

CALIBRATION_SIZE = 32  # images each int8 export calibrates on
GATE_SIZE = 32  # images export compares int8 with fp32 on (its accuracy gate)


def quantize_options(source: Source) -> Any:
    """`export.quantize.QuantizeOptions` for the benchmark's int8 exports (ONNX, OpenVINO IR) of `source`.

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
