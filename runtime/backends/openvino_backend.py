"""OpenVINO IR (.xml + .bin) on OpenVINO's CPU plugin. Torch-free: the [openvino] extra.

The model is compiled once, with the batch dimension left dynamic (an exported IR takes any
batch; a fixed-batch IR keeps its batch and the predictor pads to it). Precision is explicit:
OpenVINO's CPU plugin runs an "fp32" model in bf16 on CPUs with AVX-512 BF16 or AMX unless told
otherwise (measured here: max |dlogit| 2e-3 against PyTorch), so INFERENCE_PRECISION_HINT is f32
for every artifact. An int8 IR still runs its quantized layers in int8 (the hint is the
precision of what is not quantized).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelIO, ModelLoadError, run_failed
from runtime.formats import install_hint
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.openvino_ir import check_ir, openvino_reason
from runtime.signal_stack import kept_signal_stack

# Compile-time settings: exact fp32 where not quantized, latency first (one request at a time).
_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64}


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(f"the openvino backend needs OpenVINO: {install_hint('openvino')}") from None
    return openvino


def _dims(shape: Any) -> tuple[int | None, ...]:
    # A dynamic dimension (or a range) is None; a static one its length.
    return tuple(d.get_length() if d.is_static else None for d in shape)


def _metadata(model: Any, path: str | Path) -> ArtifactMetadata | None:
    """The alexnet-deploy metadata from the IR's rt_info, or None for an IR exported elsewhere."""
    if not model.has_rt_info([METADATA_KEY]):
        return None
    return ArtifactMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), source=path)


class OpenVinoBackend(Backend):
    name = "openvino"
    format = "openvino"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        ov = _import_openvino()
        if device not in ("auto", "cpu"):
            raise BackendUnavailableError(
                f"the openvino backend runs on the CPU here (its GPU plugin is for Intel GPUs); --device {device} is not it"
            )
        self.path = path
        xml, weights = check_ir(path)
        core = ov.Core()
        try:
            model = core.read_model(str(xml), str(weights))
        except Exception as exc:  # OpenVINO raises RuntimeError with a multi-line trace of C++ checks
            raise ModelLoadError(f"OpenVINO cannot read {path}: {openvino_reason(exc)}") from exc
        self.metadata = _metadata(model, path)
        self.io = self._declared_io(model, path)
        config: dict[str, Any] = dict(_CONFIG)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            with kept_signal_stack():  # the CPU plugin replaces this thread's signal stack (runtime/signal_stack.py)
                self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelLoadError(f"OpenVINO cannot compile {path} for the CPU: {openvino_reason(exc)}") from exc
        self.request = self.compiled.create_infer_request()
        self.device = "CPU"

    def _declared_io(self, model: Any, path: str | Path) -> ModelIO:
        """The graph's input and output, refused at load unless it takes one float (N, 3, H, W) tensor."""
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise ModelLoadError(
                f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; an image classifier "
                f"has one input"
            )
        port = model.inputs[0]
        shape, kind = _dims(port.get_partial_shape()), port.get_element_type().get_type_name()
        if kind not in _DTYPES or len(shape) != 4 or shape[1] not in (None, 3):
            raise ModelLoadError(
                f"{path} takes input {port.any_name!r} of shape {port.get_partial_shape()} {kind}; alexnet-deploy "
                f"runs image classifiers that take one (N, 3, H, W) float tensor"
            )
        out = _dims(model.outputs[0].get_partial_shape())
        return ModelIO(
            input_name=port.any_name,
            input_shape=shape,
            output_name=model.outputs[0].any_name,
            num_outputs=out[-1] if len(out) == 2 else None,
            input_dtype=_DTYPES[kind],
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        # batch: (N, 3, H, W) float32 -> logits (N, classes)
        feed = np.ascontiguousarray(batch, dtype=self.io.input_dtype)
        try:
            result = self.request.infer({0: feed})
        except Exception as exc:  # OpenVINO's RuntimeError for a shape the model does not take
            expected = str(self.compiled.inputs[0].get_partial_shape())
            raise run_failed(self.path, RuntimeError(openvino_reason(exc)), feed, expected) from exc
        return np.asarray(result[self.compiled.outputs[0]], dtype=np.float32)

    def close(self) -> None:
        self.request = self.compiled = None
