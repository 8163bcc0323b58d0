"""ONNX models on onnxruntime, with the execution providers picked explicitly.

`device` maps to providers, each used only when this onnxruntime build has it:

    auto  -> CUDA, CoreML, OpenVINO, then CPU (whichever are installed, in that order)
    cpu   -> CPU only (reproducible numbers)
    cuda  -> CUDA (+ CPU for ops CUDA lacks); an error if the CUDA provider is missing
    mps   -> CoreML (+ CPU); an error off macOS or without the CoreML provider

An explicit `providers` list overrides `device`. The session is created once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelIO, ModelLoadError, check_model_path, run_failed
from runtime.errors import first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

_AUTO_ORDER = (CUDA, COREML, OPENVINO, CPU)
_DEVICE_PROVIDER = {"cuda": CUDA, "mps": COREML}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def choose_providers(device: str, available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """The provider list for `device` from those `available` (see the module docstring)."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime here has no {', '.join(missing)}; installed providers: {', '.join(available)}"
            )
        return list(requested)
    if device == "auto":
        return [p for p in _AUTO_ORDER if p in available] or [CPU]
    if device == "cpu":
        return [CPU]
    provider = _DEVICE_PROVIDER.get(device)
    if provider is None:
        raise BackendUnavailableError(f"unknown device {device!r} for onnxruntime; use auto, cpu, cuda or mps")
    if provider not in available:
        package = "onnxruntime-gpu" if device == "cuda" else "onnxruntime on macOS (it ships the CoreML provider)"
        raise BackendUnavailableError(
            f"--device {device} needs onnxruntime's {provider}, which this installation lacks "
            f"(installed: {', '.join(available)}); install {package} or use --device cpu"
        )
    return [provider, CPU]


def _dims(shape: Sequence[Any]) -> tuple[int | None, ...]:
    # onnxruntime reports dynamic dimensions as strings ("batch") or None.
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _shown(shape: Sequence[Any]) -> str:
    """(batch, 3, 224, 224) for display; onnxruntime names dynamic dimensions or leaves them None."""
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    format = "onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        **_: Any,
    ) -> None:
        ort = _import_ort()
        self.path = path
        check_model_path(Path(path))  # a FIFO named model.onnx would block the session's read
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: we check the providers ourselves
        if threads:
            options.intra_op_num_threads = int(threads)
        chosen = choose_providers(device, ort.get_available_providers(), providers)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail, ...)
            first = first_line(exc)
            raise ModelLoadError(f"onnxruntime cannot load {path}: {first}") from exc
        active = self.session.get_providers()
        # A provider that fails to initialise (e.g. CUDA libraries missing) is silently dropped.
        wanted = list(providers) if providers else ([_DEVICE_PROVIDER[device]] if device in _DEVICE_PROVIDER else [])
        dropped = [p for p in wanted if p not in active]
        if dropped:
            raise BackendUnavailableError(
                f"onnxruntime could not start {', '.join(dropped)} (check the CUDA/cuDNN installation); use --device cpu"
            )
        self.providers = active
        self.device = ",".join(p.removesuffix("ExecutionProvider") for p in active)

        meta_map = self.session.get_modelmeta().custom_metadata_map
        text = meta_map.get(METADATA_KEY)
        self.metadata = ArtifactMetadata.from_json(text, source=path) if text else None
        self.io = self._declared_io(path)

    def _declared_io(self, path: str | Path) -> ModelIO:
        """The graph's input and output, refused at load unless it takes one float (N, 3, H, W) tensor."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); an image classifier has one"
            )
        shape, kind = _dims(inputs[0].shape), inputs[0].type
        if kind not in _DTYPES or len(shape) != 4 or shape[1] not in (None, 3):
            raise ModelLoadError(
                f"{path} takes input {inputs[0].name!r} of shape {_shown(inputs[0].shape)} {kind}; alexnet-deploy runs "
                f"image classifiers that take one (N, 3, H, W) float tensor"
            )
        out_shape = _dims(outputs[0].shape)
        return ModelIO(
            input_name=inputs[0].name,
            input_shape=shape,
            output_name=outputs[0].name,
            num_outputs=out_shape[-1] if len(out_shape) == 2 else None,
            input_dtype=_DTYPES[kind],
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        # batch: (N, 3, H, W) -> logits (N, classes)
        feed = {self.io.input_name: batch.astype(self.io.input_dtype, copy=False)}
        try:
            (logits,) = self.session.run([self.io.output_name], feed)
        except Exception as exc:  # onnxruntime's pybind errors (InvalidArgument, Fail, ...) share no base class
            inp = self.session.get_inputs()[0]
            raise run_failed(self.path, exc, feed[self.io.input_name], f"{_shown(inp.shape)} {inp.type}") from exc
        return np.asarray(logits, dtype=np.float32)

    def close(self) -> None:
        self.session = None
