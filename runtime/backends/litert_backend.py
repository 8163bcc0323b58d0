"""LiteRT (TensorFlow Lite) .tflite models on the LiteRT interpreter's CPU (XNNPACK). Torch-free:
the [litert-runtime] extra (ai-edge-litert).

The batch is part of the file (the converter folds it into its reshapes; resize_tensor_input does
not undo that), so the model's io declares it and the predictor pads every call to it. A
full-integer int8 model takes and returns int8 (or uint8) tensors: `run` quantizes the float32
batch with the input's scale and zero point and dequantizes the logits with the output's, so the
backend's interface stays float32 (N, 3, H, W) -> (N, classes) like every other.

The file is read once, checked (runtime/tflite_model.py) and handed to the interpreter as bytes, so
the engine runs exactly what was checked. The interpreter writes "INFO: Created TensorFlow Lite
XNNPACK delegate for CPU." to stderr from C++; silencing it would mean redirecting the process's fd 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelIO, ModelLoadError, run_failed
from runtime.errors import first_line
from runtime.formats import install_hint
from runtime.metadata import ArtifactMetadata
from runtime.tflite_model import read_metadata, read_tflite

_QUANTIZED = (np.int8, np.uint8)
_FLOATS = (np.float32, np.float16)


def _import_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BackendUnavailableError(
            f"the litert backend needs ai-edge-litert: {install_hint('litert-runtime')}"
        ) from None
    return Interpreter


def _default_threads() -> int:
    # The interpreter's own default is one thread; use the cores this process may run on, as onnxruntime does.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _quantization(detail: dict[str, Any], role: str, path: str | Path) -> tuple[float, int] | None:
    """(scale, zero point) of an int8/uint8 tensor; None for a float one; ModelLoadError for anything else."""
    dtype = np.dtype(detail["dtype"])
    if dtype in _FLOATS:
        return None
    scale, zero_point = detail["quantization"]
    if dtype not in _QUANTIZED or not (np.isfinite(scale) and scale > 0):
        raise ModelLoadError(
            f"{path}: its {role} {detail['name']!r} is {dtype.name} without a per-tensor scale; alexnet-deploy "
            f"runs models with float32 or quantized int8/uint8 inputs and outputs"
        )
    return float(scale), int(zero_point)


class LiteRtBackend(Backend):
    name = "litert"
    format = "litert"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        interpreter_class = _import_interpreter()
        if device not in ("auto", "cpu"):
            raise BackendUnavailableError(
                f"the litert backend runs on the CPU (XNNPACK); --device {device} is not available to it"
            )
        self.path = path
        model = read_tflite(path)  # a bounded regular file with the TFLite identifier, or a one-line error
        text = read_metadata(model, path)
        self.metadata = ArtifactMetadata.from_json(text, source=path) if text is not None else None
        self.threads = int(threads or _default_threads())
        try:
            self.interpreter = interpreter_class(model_content=model, num_threads=self.threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # ValueError/RuntimeError from the C++ verifier, resolver or allocator
            raise ModelLoadError(f"LiteRT cannot load {path}: {first_line(exc, limit=300)}") from exc
        self.io = self._declared_io(path)
        self.device = "CPU"

    def _declared_io(self, path: str | Path) -> ModelIO:
        """The graph's input and output, refused at load unless it is one (B, 3, H, W) input and one output."""
        try:
            inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        except Exception as exc:  # e.g. UnicodeDecodeError: a tensor name that is not UTF-8
            raise ModelLoadError(f"LiteRT cannot read the inputs of {path}: {first_line(exc)}") from exc
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one of each"
            )
        source, sink = inputs[0], outputs[0]
        shape = tuple(int(d) for d in source["shape"])
        if len(shape) != 4 or shape[1] != 3:
            raise ModelLoadError(
                f"{path} takes input {source['name']!r} of shape {shape}; alexnet-deploy runs image classifiers "
                f"that take one (N, 3, H, W) tensor"
            )
        self.input_index, self.output_index = source["index"], sink["index"]
        self.input_type = np.dtype(source["dtype"])
        self.input_quant = _quantization(source, "input", path)
        self.output_quant = _quantization(sink, "output", path)
        out = tuple(int(d) for d in sink["shape"])
        return ModelIO(
            input_name=source["name"],
            input_shape=shape,  # the batch is fixed in the file
            output_name=sink["name"],
            num_outputs=out[-1] if len(out) == 2 else None,
            input_dtype=np.float32,  # `run` takes float32 and quantizes it itself
        )

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        if self.input_quant is None:
            return np.ascontiguousarray(batch, dtype=self.input_type)
        scale, zero_point = self.input_quant
        limits = np.iinfo(self.input_type)
        quantized = np.rint(batch.astype(np.float32) / np.float32(scale)) + zero_point
        return np.clip(quantized, limits.min, limits.max).astype(self.input_type)

    def run(self, batch: np.ndarray) -> np.ndarray:
        # batch: (B, 3, H, W) float32 -> logits (B, classes) float32
        feed = self._feed(batch)
        try:
            self.interpreter.set_tensor(self.input_index, feed)
            self.interpreter.invoke()
            result = self.interpreter.get_tensor(self.output_index)  # a copy: the interpreter reuses its buffers
        except Exception as exc:  # ValueError for a shape the model does not take, RuntimeError from a kernel
            expected = f"{self.io.input_shape} {self.input_type.name}"
            raise run_failed(self.path, exc, batch, expected) from exc
        if self.output_quant is None:
            return np.asarray(result, dtype=np.float32)
        scale, zero_point = self.output_quant
        return ((result.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)

    def close(self) -> None:
        self.interpreter = None
