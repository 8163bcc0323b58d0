"""The runner of the exported OpenVINO IR, fp32 and int8, on OpenVINO's CPU plugin.

Both rows read the .xml `export` writes (`alexnet-export --format openvino [--precision int8]`),
opened by `runtime.load(..., backend="openvino")` exactly as `alexnet-run` opens it: one model
compiled with the backend's settings (INFERENCE_PRECISION_HINT f32, PERFORMANCE_HINT LATENCY, the
batch left dynamic, the row's threads). What is timed is that compiled model's infer request on a
batch already set as its input, as the onnxruntime runner times the backend's session.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.artifacts import Skip, import_optional
from benchmarks.runner_base import Runner
from benchmarks.variant import Variant

# What the row records of the compiled model's configuration (read back from it, not what was asked).
CONFIG_KEYS = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS")


class OpenVinoRunner(Runner):
    backend = "openvino"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        if device != "cpu":  # a skip: OpenVINO's GPU plugin is for Intel GPUs
            return []
        return [("openvino", variant.precision)]

    def _build(self) -> None:
        self.ov = import_optional("openvino")
        if self.device != "cpu":
            raise Skip(f"OpenVINO has no {self.device.upper()} device (its GPU plugin is for Intel GPUs)")
        import runtime
        from runtime.backends import BackendUnavailableError

        path = self.artifacts.get("openvino", self.precision)
        self._use_artifact(path)
        try:
            self.predictor = runtime.load(path, backend="openvino", device=self.device, threads=self.threads)
        except BackendUnavailableError as exc:
            raise Skip(str(exc)) from exc
        # Timed below: the backend's own compiled model and infer request, so no preprocessing or batching counts.
        backend = self.predictor.backend
        self.compiled, self.request = backend.compiled, backend.request
        self.input_type = backend.io.input_dtype
        self.info["config"] = compiled_config(self.compiled)
        if self.precision == "int8":  # how export quantized it: scheme, layers kept in fp32, the gate's verdict
            self.info["quantization"] = self.predictor.metadata.quantization

    def prepare(self, batch: np.ndarray) -> None:
        # The batch becomes the request's input tensor (shared, not copied per step); the batch is dynamic.
        self.batch = np.ascontiguousarray(batch, dtype=self.input_type)
        self.request.set_input_tensor(self.ov.Tensor(self.batch, shared_memory=True))

    def step(self) -> None:
        self.request.infer()

    def logits(self) -> np.ndarray:
        return np.array(self.request.get_output_tensor(0).data, np.float32)

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
        self.predictor = self.compiled = self.request = None


def compiled_config(compiled: Any) -> dict[str, Any]:
    """CONFIG_KEYS as the compiled model reports them, JSON-ready ("f32" for the precision hint's ov.Type)."""
    config = {}
    for key in CONFIG_KEYS:
        value = compiled.get_property(key)
        config[key] = value if isinstance(value, (int, float, str)) else _type_name(value)
    return config


def _type_name(value: Any) -> str:
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)
