"""One runner per backend, all with the same steps:

    runner.build()          once: load/compile the model on its device (may raise Skip)
    runner.prepare(batch)   per batch size: put the input where the engine wants it (untimed)
    runner.step()           one inference: the only thing timed
    runner.sync()           wait for the device (CUDA/MPS run asynchronously)
    runner.logits()         the last step's output as float32 numpy (checked against eager)

Runners drive the engines directly (a torch module, an onnxruntime session, an OpenVINO
infer request), so a timing covers the model and nothing else: no preprocessing, no
host-device copy of the input. The artifacts they load are the ones `export` makes.
"""

from __future__ import annotations

import abc
import sys
import time
from typing import Any, ClassVar

import numpy as np

from benchmarks.artifacts import Artifacts, Skip, artifact_bytes
from runtime.errors import first_line

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class Runner(abc.ABC):
    backend: ClassVar[str]

    def __init__(self, artifacts: Artifacts, device: str, variant: str = "fp32", threads: int | None = None) -> None:
        self.artifacts, self.device, self.variant, self.threads = artifacts, device, variant, threads
        self.precision = variant.split()[0]  # "fp16 channels_last" -> "fp16"
        self.artifact: str | None = None
        self.artifact_bytes: int | None = None
        self.build_s: float | None = None
        self.info: dict[str, Any] = {}

    def build(self) -> None:
        t0 = time.perf_counter()
        self._build()
        self.build_s = time.perf_counter() - t0

    @abc.abstractmethod
    def _build(self) -> None: ...

    @abc.abstractmethod
    def prepare(self, batch: np.ndarray) -> None: ...

    @abc.abstractmethod
    def step(self) -> None: ...

    def sync(self) -> None:
        pass

    @abc.abstractmethod
    def logits(self) -> np.ndarray: ...

    def close(self) -> None:
        pass

    def _use_artifact(self, path: Any) -> None:
        self.artifact, self.artifact_bytes = str(path), artifact_bytes(path)


# --- PyTorch: eager, torch.compile, TorchScript -------------------------------------------------


def torch_device(device: str) -> Any:
    import torch

    from runtime.backends.torch_common import available_torch_devices

    if device not in available_torch_devices(torch):
        why = "torch.cuda.is_available() is False" if device == "cuda" else "needs PyTorch with Metal on Apple silicon"
        raise Skip(f"no {device.upper()} device ({why})")
    return torch.device(device)


class TorchRunner(Runner):
    """Shared by the torch backends: an nn.Module-like callable on a device, in a dtype."""

    def _build(self) -> None:
        import torch

        self.torch = torch
        self._device = torch_device(self.device)
        self.dtype = getattr(torch, TORCH_DTYPES[self.precision])
        self.input_dtype = self.dtype
        self.channels_last = "channels_last" in self.variant
        if self.dtype != torch.float32 and self.device == "cpu":
            raise Skip(f"{self.precision} on CPU is an emulation here, not a deployment choice")
        self.module = self._module()

    @abc.abstractmethod
    def _module(self) -> Any: ...

    def _eager_model(self) -> Any:
        model = self.artifacts.source.build_model().to(self._device, self.dtype)
        if self.channels_last:
            model = model.to(memory_format=self.torch.channels_last)
        return model

    def prepare(self, batch: np.ndarray) -> None:
        # (N, 3, H, W) float32 -> the module's device and dtype, outside the timed region
        x = self.torch.from_numpy(batch).to(self._device, self.input_dtype)
        self.x = x.contiguous(memory_format=self.torch.channels_last) if self.channels_last else x
        self.sync()

    def step(self) -> None:
        with self.torch.inference_mode():
            self.out = self.module(self.x)

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        elif self.device == "mps":
            self.torch.mps.synchronize()

    def logits(self) -> np.ndarray:
        return self.out.float().cpu().numpy()


class EagerRunner(TorchRunner):
    backend = "pytorch"

    def _module(self) -> Any:
        self._use_artifact(self.artifacts.source.checkpoint_path)  # what ships: the checkpoint
        return self._eager_model()


class CompileRunner(TorchRunner):
    """torch.compile (inductor). On CPU with freezing: weights become constants and are prepacked."""

    backend = "torch.compile"

    def _module(self) -> Any:
        torch = self.torch
        if sys.platform == "win32" or not torch._dynamo.is_dynamo_supported():
            raise Skip(f"torch.compile is not supported on this platform/Python {sys.version_info[:2]}")
        self._use_artifact(self.artifacts.source.checkpoint_path)
        options = {"freezing": True} if self.device == "cpu" else {}
        self.info["inductor_options"] = options
        # dynamic=False: kernels specialized per batch size (recompiled in each warm-up).
        compiled = torch.compile(self._eager_model(), dynamic=False, options=options)
        size = self.artifacts.source.image_size
        try:  # compile now, so a missing C++ compiler shows at build, not mid-run
            with torch.inference_mode():
                compiled(torch.zeros(1, 3, size, size, device=self._device, dtype=self.dtype))
        except Exception as exc:  # inductor raises many kinds (BackendCompilerFailed, CppCompileError...)
            raise Skip(f"torch.compile failed here: {first_line(exc)}") from None
        return compiled


class TorchScriptRunner(TorchRunner):
    """The exported TorchScript archive; variant "fp32 optimized" adds torch.jit.optimize_for_inference."""

    backend = "torchscript"

    def _module(self) -> Any:
        torch = self.torch
        path = self.artifacts.get("torchscript", self.precision)
        self._use_artifact(path)
        self.input_dtype = torch.float32  # an fp16 export casts inside: its interface stays fp32
        module = torch.jit.load(str(path), map_location=self._device).eval()
        if "optimized" in self.variant:
            # freezes first if needed; on CPU: oneDNN layouts, prepacked weights, conv+relu fused
            module = torch.jit.optimize_for_inference(module)
            size = self.artifacts.source.image_size
            with torch.inference_mode():  # oneDNN refuses some shapes: find out now, once, not per batch size
                module(torch.zeros(1, 3, size, size, device=self._device))
        return module


# --- ONNX Runtime ---------------------------------------------------------------------------------

ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "mps": "CoreMLExecutionProvider"}


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def _build(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise Skip("onnxruntime not installed (pip install onnxruntime)") from None
        self.ort = ort
        provider = ORT_PROVIDERS[self.device]
        if provider not in ort.get_available_providers():
            hint = {"cuda": "pip install onnxruntime-gpu", "mps": "the CoreML provider ships with onnxruntime on macOS"}
            raise Skip(f"onnxruntime has no {provider} here ({hint[self.device]})")
        path = self.artifacts.get("onnx", self.precision)
        self._use_artifact(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # incl. NCHWc layouts
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # AlexNet is a chain: nothing to overlap
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        providers = [provider] if provider == ORT_PROVIDERS["cpu"] else [provider, ORT_PROVIDERS["cpu"]]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        if provider not in self.session.get_providers():  # a provider that fails to start is dropped silently
            raise Skip(f"onnxruntime could not start {provider} (check the CUDA/cuDNN libraries)")
        self.info["providers"] = self.session.get_providers()
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
        self.session = self.binding = None


# --- OpenVINO ----------------------------------------------------------------------------------------


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU, reading the exported ONNX directly (that file is what ships)."""

    backend = "openvino"

    def _build(self) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise Skip("openvino not installed (pip install 'alexnet-deploy[openvino]')") from None
        if self.device != "cpu":
            raise Skip(f"OpenVINO has no {self.device.upper()} device (its GPU plugin is for Intel GPUs)")
        self.ov = ov
        onnx_path = self.artifacts.get("onnx", self.precision)
        self.core = ov.Core()
        self.model = self.core.read_model(str(onnx_path))
        self._use_artifact(onnx_path)
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            self.config["INFERENCE_NUM_THREADS"] = self.threads
        self.info["config"] = dict(self.config)
        self.requests: dict[int, Any] = {}

    def prepare(self, batch: np.ndarray) -> None:
        # One static shape per batch size, compiled once, as a deployment with a known batch would.
        n = len(batch)
        if n not in self.requests:
            model = self.model.clone()
            model.reshape({model.inputs[0].any_name: [n, *batch.shape[1:]]})
            self.requests[n] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        self.request = self.requests[n]
        self.batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.request.set_input_tensor(self.ov.Tensor(self.batch, shared_memory=True))

    def step(self) -> None:
        self.request.infer()

    def logits(self) -> np.ndarray:
        return np.array(self.request.get_output_tensor(0).data, np.float32)

    def close(self) -> None:
        self.requests.clear()


# --- Core ML -------------------------------------------------------------------------------------------


class CoreMLRunner(Runner):
    """Core ML through runtime (macOS only): cpu = CPU_ONLY, mps = all compute units (GPU/ANE)."""

    backend = "coreml"

    def _build(self) -> None:
        if sys.platform != "darwin":
            raise Skip("Core ML predicts only on macOS")
        if self.device == "cuda":
            raise Skip("Core ML has no CUDA device")
        import runtime

        path = self.artifacts.get("coreml", self.precision)
        self._use_artifact(path)
        self.predictor = runtime.load(path, backend="coreml", device=self.device)

    def prepare(self, batch: np.ndarray) -> None:
        self.batch = np.ascontiguousarray(batch, dtype=np.float32)

    def step(self) -> None:
        self.out = self.predictor.predict_logits(self.batch)

    def logits(self) -> np.ndarray:
        return self.out

    def close(self) -> None:
        self.predictor.close()


RUNNERS: dict[str, type[Runner]] = {
    r.backend: r
    for r in (EagerRunner, CompileRunner, TorchScriptRunner, OnnxRuntimeRunner, OpenVinoRunner, CoreMLRunner)
}
BACKENDS = tuple(RUNNERS)


def variants(backend: str, device: str) -> list[str]:
    """The configurations benchmarked per backend and device (eager fp32 is the baseline)."""
    if backend == "pytorch":
        return {
            "cpu": ["fp32", "fp32 channels_last"],
            "mps": ["fp32", "fp16"],
            "cuda": ["fp32", "fp16", "bf16", "fp16 channels_last"],
        }[device]
    if backend == "torch.compile":
        return ["fp32", "fp16"] if device == "cuda" else ["fp32"]
    if backend == "torchscript":
        return ["fp32", "fp32 optimized"] + (["fp16"] if device == "cuda" else [])
    if backend == "onnxruntime" and device == "cuda":
        return ["fp32", "fp16"]  # the fp16 export casts inside the graph: input and logits stay float32
    return ["fp32"]
