"""The runners of the edge formats, fp32 and int8, on the CPU: an ExecuTorch program (.pte) and a
LiteRT model (.tflite).

Both read the file `export` writes (`alexnet-export --format executorch|litert [--precision int8]`),
opened by `runtime.load` exactly as `alexnet-run` opens it, and time that backend's own engine call
on an input already prepared, without the Predictor's checks, as the other shipped formats' runners do:

- ExecuTorch: the program's `forward` method, `execute([tensor])`, the call the backend's `run` makes.
  Its memory plan takes at most `max_batch` images per call (15, the format table's); alexnet-run runs
  a larger batch in parts, so that row times `Predictor.predict_logits` (its parts, one after another)
  and says so in its info. `threads` is not applied: ExecuTorch has one XNNPACK threadpool per process,
  of its own default size, and no per-program setting (the row records the pool's size).
- LiteRT: `set_tensor` + `invoke` on the backend's interpreter, the input already quantized as the
  backend quantizes it (an int8 model takes int8). The batch is part of the file, so alexnet-bench has
  one file per batch size (`Artifacts.get(fmt, precision, batch)`, exported beforehand by the parent)
  and each row times the file of its batch, as a user who runs batches of N exports with
  `--batch-size N`. Where there is one file for every batch (alexnet-report's own, export's default
  batch 1), a batch of another size runs as alexnet-run runs it: `Predictor.predict_logits`, padded
  and split to the file's batch; the row says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.artifacts import Skip, import_optional
from benchmarks.runner_base import Runner
from benchmarks.variant import Variant
from runtime import formats


class EdgeRunner(Runner):
    """What both share: the format's file, the CPU only, `runtime.load`, and a batch that the file does not take
    in one call timed through the Predictor, as alexnet-run runs it."""

    module: str  # the engine's module: without it the row is a skip with the install hint

    @classmethod
    def table(cls) -> formats.Format:
        return formats.for_backend(cls.backend)

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        # Elsewhere than on its devices (the CPU) the row is a skip: an export would be wasted time.
        return [(cls.table().name, variant.precision)] if device in cls.table().devices else []

    def _build(self) -> None:
        self.predictor: Any = None
        self.whole = True  # the batch prepared runs as one engine call
        import_optional(self.module)
        table = self.table()
        if self.device not in table.devices:
            raise Skip(f"{table.title} runs on the CPU here (XNNPACK), not on {self.device.upper()}")

    def _load(self, path: Any) -> Any:
        """`path` opened as alexnet-run opens it (the previous file closed); its predictor."""
        import runtime
        from runtime.backends import BackendUnavailableError

        self.close()
        self._use_artifact(path)
        try:
            self.predictor = runtime.load(path, backend=self.backend, device=self.device, threads=self.threads)
        except BackendUnavailableError as exc:
            raise Skip(str(exc)) from exc
        return self.predictor

    def _quantization(self) -> dict[str, Any]:
        """How export quantized an int8 file: scheme, layers kept in fp32, the gate's verdict."""
        return {"quantization": self.predictor.metadata.quantization} if self.precision == "int8" else {}

    def _parts_note(self, n: int, per_call: int, last: str = "") -> dict[str, Any]:
        """The row's note when its batch runs in parts of `per_call` (`last`: what becomes of a partial last one)."""
        if self.whole:
            return {}
        rest = n % per_call
        calls = f"{math.ceil(n / per_call)} engine calls of {per_call} image{'s' if per_call > 1 else ''}"
        tail = f", the last one of {rest}" + (f" {last}" if last else "") if rest else ""
        return {"run_as": f"Predictor.predict_logits, as alexnet-run runs a batch of {n}: {calls}{tail}"}

    def close(self) -> None:
        if getattr(self, "predictor", None) is not None:
            self.predictor.close()
        self.predictor = None


class ExecuTorchRunner(EdgeRunner):
    backend = "executorch"
    module = "executorch"

    def _build(self) -> None:
        super()._build()
        import torch

        self.torch = torch
        predictor = self._load(self.artifacts.get(self.table().name, self.precision))
        backend = predictor.backend
        # The method object the backend's `run` executes (runtime.load has loaded it: `configure`).
        self.forward = backend._load_forward()
        self.input_type = backend.io.input_dtype
        self.limit = predictor.call_limit  # the program's max_batch: images per call (None: any)
        self.info.update(max_batch=self.limit, threads=threadpool_note(), **self._quantization())

    def prepare(self, batch: np.ndarray) -> None:
        self.batch = np.ascontiguousarray(batch, dtype=np.float32)  # what the Predictor takes
        self.whole = self.limit is None or len(batch) <= self.limit
        self.inputs = [self.torch.from_numpy(np.ascontiguousarray(batch, dtype=self.input_type))]

    def step(self) -> None:
        if self.whole:
            self.out = self.forward.execute(self.inputs)[0]
        else:  # above the program's limit: alexnet-run's path, parts of at most `limit` images
            self.out = self.predictor.predict_logits(self.batch)

    def logits(self) -> np.ndarray:
        out = self.out
        return out.float().numpy() if isinstance(out, self.torch.Tensor) else np.asarray(out, np.float32)

    def batch_info(self) -> dict[str, Any]:
        return self._parts_note(len(self.batch), self.limit or len(self.batch))


def threadpool_note() -> str:
    """What the ExecuTorch row's threads are: its XNNPACK threadpool's own default, whatever --threads says."""
    try:
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

        size = f" of {_threadpool_get_thread_count()} threads"
    except (ImportError, AttributeError):  # a getter of executorch 1.4.1's, private: it may go
        size = ""
    return f"not set: ExecuTorch's XNNPACK threadpool{size}, its own default (one per process, no per-program setting)"


class LiteRtRunner(EdgeRunner):
    backend = "litert"
    module = "ai_edge_litert"

    def prepare(self, batch: np.ndarray) -> None:
        # The file of this batch (exported at it; alexnet-report: its one file), opened untimed, here.
        path = self.artifacts.get(self.table().name, self.precision, len(batch))
        if self.predictor is None or str(path) != self.artifact:
            self._load(path)
        backend = self.predictor.backend
        self.interpreter, self.engine = backend.interpreter, backend
        self.file_batch = backend.io.input_shape[0]
        self.batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.whole = self.file_batch == len(batch)
        self.feed = backend._feed(self.batch)  # quantized (int8 in, int8 model) as the backend's run does

    def step(self) -> None:
        if self.whole:
            self.interpreter.set_tensor(self.engine.input_index, self.feed)
            self.interpreter.invoke()
        else:  # a file of another batch: alexnet-run's path, padded and split to it
            self.out = self.predictor.predict_logits(self.batch)

    def logits(self) -> np.ndarray:
        if not self.whole:
            return self.out
        result = self.interpreter.get_tensor(self.engine.output_index)
        return dequantized(result, self.engine.output_quant)

    def batch_info(self) -> dict[str, Any]:
        note = {"threads": self.engine.threads, "file_batch": self.file_batch, **self._quantization()}
        return note | self._parts_note(len(self.batch), self.file_batch, "padded to the file's fixed batch")


def dequantized(result: np.ndarray, quant: tuple[float, int] | None) -> np.ndarray:
    """The interpreter's output as float32 logits: an int8 one dequantized with its (scale, zero point)."""
    if quant is None:
        return np.asarray(result, dtype=np.float32)
    scale, zero_point = quant
    return ((result.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
