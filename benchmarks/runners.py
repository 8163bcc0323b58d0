"""One runner per backend, all with the same steps (`benchmarks.runner_base.Runner`):
build once, then per batch size prepare, step (timed), sync, logits.

Runners drive the engines directly (a torch module, an onnxruntime session, an OpenVINO
infer request), so a timing covers the model and nothing else: no preprocessing, no
host-device copy of the input. The artifacts they load are the ones `export` makes; the
shipped formats (TorchScript, ONNX, OpenVINO IR, Core ML) are opened by `runtime.load`, as
`alexnet-run` opens them, and the runner times that backend's model. The end-to-end rows,
preprocessing included, are `benchmarks.e2e`'s.

RUNNERS has a runner for every backend of the format table (`runtime.formats`) and for the
PyTorch ones (eager, torch.compile).
"""

from __future__ import annotations

import abc
import sys
from typing import Any

import numpy as np

from benchmarks.artifacts import Skip
from benchmarks.edge_runners import ExecuTorchRunner, LiteRtRunner
from benchmarks.onnx_runners import OnnxRuntimeRunner
from benchmarks.openvino_runner import OpenVinoRunner
from benchmarks.runner_base import Runner
from benchmarks.variant import TORCH_DTYPES, Variant
from runtime import formats
from runtime.errors import first_line

__all__ = ["BACKENDS", "RUNNERS", "Runner", "torch_device"]


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
        self.channels_last = "channels_last" in self.variant.options
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
            raise Skip(f"torch.compile failed here: {first_line(exc)}") from exc
        return compiled


class TorchScriptRunner(TorchRunner):
    """The exported TorchScript archive; variant "fp32 optimized" adds torch.jit.optimize_for_inference."""

    backend = "torchscript"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        return [("torchscript", variant.precision)]

    def _module(self) -> Any:
        import runtime

        torch = self.torch
        path = self.artifacts.get("torchscript", self.precision)
        self._use_artifact(path)
        self.input_dtype = torch.float32  # an fp16 export casts inside: its interface stays fp32
        # Loaded as alexnet-run loads it: the module timed is the runtime backend's own (its map_location,
        # eval mode), called on an input already on the device, without the Predictor's checks or copies.
        self.predictor = runtime.load(path, backend="torchscript", device=self.device, threads=self.threads)
        module = self.predictor.backend.module
        if "optimized" in self.variant.options:
            # freezes first if needed; on CPU: oneDNN layouts, prepacked weights, conv+relu fused
            module = torch.jit.optimize_for_inference(module)
            size = self.artifacts.source.image_size
            with torch.inference_mode():  # oneDNN refuses some shapes: find out now, once, not per batch size
                module(torch.zeros(1, 3, size, size, device=self._device))
        return module

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
            self.predictor = None


# --- Core ML -------------------------------------------------------------------------------------------


class CoreMLRunner(Runner):
    """Core ML through runtime (macOS only): cpu = CPU_ONLY, mps = all compute units (GPU/ANE)."""

    backend = "coreml"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        # Core ML predicts only on macOS: elsewhere the row is a skip, and converting would be wasted time.
        return [("coreml", variant.precision)] if sys.platform == "darwin" and device != "cuda" else []

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
        # The runtime backend's model call, as in the onnxruntime runner: not the Predictor's shape checks.
        self.out = self.predictor.backend.run(self.batch)

    def logits(self) -> np.ndarray:
        return self.out

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:  # None when the build was a skip (not macOS)
            self.predictor.close()
            self.predictor = None


SHIPPED: dict[str, type[Runner]] = {
    r.backend: r
    for r in (TorchScriptRunner, OnnxRuntimeRunner, OpenVinoRunner, CoreMLRunner, ExecuTorchRunner, LiteRtRunner)
}
# The PyTorch baselines, then one runner per backend of the format table, in the table's order.
RUNNERS: dict[str, type[Runner]] = {
    EagerRunner.backend: EagerRunner,
    CompileRunner.backend: CompileRunner,
    **{f.backend: SHIPPED[f.backend] for f in formats.FORMATS.values() if f.benchmarked},
}
BACKENDS = tuple(RUNNERS)
