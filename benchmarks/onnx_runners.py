"""The runner of the exported ONNX file on onnxruntime: fp32 and fp16, and int8 on the CPU.

Every row reads the .onnx `export` writes (`alexnet-export --format onnx [--precision ...]`),
opened exactly as `alexnet-run` opens it; int8 is the gated static QDQ export a CPU user would
deploy. The OpenVINO IR has its own runner (`benchmarks.openvino_runner`).
"""

from __future__ import annotations

import numpy as np

from benchmarks.artifacts import Skip
from benchmarks.runner_base import Runner
from benchmarks.variant import Variant
from runtime.backends.onnxruntime_backend import COREML, CPU, CUDA

# The provider runtime.load picks first for each device (checked here to give a benchmark's hint, not alexnet-run's).
ORT_PROVIDERS = {"cpu": CPU, "cuda": CUDA, "mps": COREML}


class OnnxRuntimeRunner(Runner):
    """The session comes from `runtime.load`, as in `alexnet-run`: the same providers and session
    options (graph optimizations, threads) for the fp32 and the int8 artifact."""

    backend = "onnxruntime"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        return [("onnx", variant.precision)]

    def _build(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise Skip("onnxruntime not installed (pip install onnxruntime)") from None
        import runtime
        from runtime.backends import BackendUnavailableError

        self.ort = ort
        provider = ORT_PROVIDERS[self.device]
        if provider not in ort.get_available_providers():
            hint = {"cuda": "pip install onnxruntime-gpu", "mps": "the CoreML provider ships with onnxruntime on macOS"}
            raise Skip(f"onnxruntime has no {provider} here ({hint[self.device]})")
        path = self.artifacts.get("onnx", self.precision)
        self._use_artifact(path)
        try:
            self.predictor = runtime.load(path, backend="onnxruntime", device=self.device, threads=self.threads)
        except BackendUnavailableError as exc:  # e.g. a CUDA provider that could not start
            raise Skip(str(exc)) from exc
        # Timed below: the session itself, so no preprocessing or batching is counted.
        self.session = self.predictor.backend.session
        self.info["providers"] = self.session.get_providers()
        if self.precision == "int8":  # how export quantized it: scheme, layers kept in fp32, the gate's verdict
            self.info["quantization"] = self.predictor.metadata.quantization
        self.input_name = self.session.get_inputs()[0].name
        self.input_type = np.float16 if "float16" in self.session.get_inputs()[0].type else np.float32

    def prepare(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch, dtype=self.input_type)
        self.binding = None
        if self.device == "cuda":  # input on the GPU beforehand, like the torch runners' input
            self.binding = self.session.io_binding()
            value = self.ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0)
            self.binding.bind_ortvalue_input(self.input_name, value)
            self.binding.bind_output(self.session.get_outputs()[0].name, "cuda")
            self._keep = value
        self.feed = {self.input_name: batch}

    def step(self) -> None:
        if self.binding is not None:
            self.session.run_with_iobinding(self.binding)  # returns once the CUDA stream is done
        else:
            self.out = self.session.run(None, self.feed)[0]

    def logits(self) -> np.ndarray:
        if self.binding is not None:
            return np.asarray(self.binding.copy_outputs_to_cpu()[0], np.float32)
        return np.asarray(self.out, np.float32)

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
        self.predictor = self.session = self.binding = None
