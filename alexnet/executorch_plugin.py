"""The `executorch` runtime backend: ExecuTorch programs (.pte) on ExecuTorch's Python runtime.

A plugin (setup.cfg, entry-point group ``alexnet_deploy.backends``), not a built-in backend:
ExecuTorch's Python runtime links libtorch, so it comes with the [executorch] extra, and
`import runtime` stays torch-free. executorch is imported only when a program is opened.

The file is checked first (runtime.pte_file: a regular, bounded file that looks like a program
and is not truncated), then loaded with ExecuTorch's internal-consistency verification; the
`forward` method (its XNNPACK delegates) is loaded only after runtime.load checked the weights'
hash, in `configure`. The alexnet-deploy metadata is the program's constant method ``alexnet_deploy_metadata`` (a
foreign program has none: it runs with labels=). ExecuTorch plans a dynamic batch's memory
for at most as many images as the export allowed (15, runtime/formats.py); the predictor
splits larger batches by the metadata's `max_batch`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelIO, ModelLoadError, run_failed
from runtime.errors import DeployError, first_line, quiet_logger
from runtime.formats import install_hint
from runtime.metadata import ArtifactMetadata
from runtime.pte_file import check_pte

METADATA_METHOD = "alexnet_deploy_metadata"  # the constant method the exporter adds
FORWARD = "forward"
# ExecuTorch's ScalarType codes of the inputs it runs (runtime/core/portable_type/scalar_type.h).
_DTYPES = {5: np.float16, 6: np.float32}
# Its error codes (runtime/core/error.h): its Python messages give only the number.
_ERRORS = {
    0x10: "NotSupported",
    0x12: "InvalidArgument",
    0x13: "InvalidType",
    0x14: "OperatorMissing",
    0x20: "NotFound",
    0x21: "MemoryAllocationFailed",
    0x22: "AccessFailed",
    0x23: "InvalidProgram",
    0x30: "DelegateInvalidCompatibility",
}
_LOG_PREFIX = re.compile(r"^\[[\w.]+:\d+\]\s*")  # "[program.cpp:184] "
# sys.stderr is swapped while a program loads (engine_log): one load at a time, so that two
# threads loading cannot restore it out of order.
_LOAD_LOCK = threading.Lock()


def _import_executorch() -> tuple[Any, Any]:
    """(torch, the ExecuTorch Runtime), or a BackendUnavailableError that says how to install it."""
    try:
        import torch

        # Importing it logs lines that are not ours to show: torchao's CUDA-only kernels that do
        # not load on a CPU build, a torch deprecation, and an "experimental API" warning.
        with quiet_logger("torchao"), quiet_logger("torch.utils._pytree"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from executorch.runtime import Runtime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the executorch backend needs ExecuTorch ({first_line(exc)}): {install_hint('executorch')}"
        ) from None
    return torch, Runtime.get()


@contextlib.contextmanager
def engine_log(lines: list[str]) -> Iterator[None]:
    """Catch ExecuTorch's log lines into `lines` for the duration. Its pybindings write them to
    Python's sys.stderr, and when a load fails its exception says only an error code ("Failed to
    load program, error: 0x:23") while the cause is the line it logged; caught, the cause goes
    into the one-line error. A load that succeeds logs only chatter (its threadpool's CPU probe,
    five lines per process), kept in the backend's `load_log` rather than printed."""
    caught = io.StringIO()
    with _LOAD_LOCK:
        try:
            with contextlib.redirect_stderr(caught):
                yield
        finally:
            lines += [line.strip() for line in caught.getvalue().splitlines() if line.strip()]


def executorch_reason(exc: BaseException, log: list[str] | tuple[str, ...] = ()) -> str:
    """ExecuTorch's message, one line: the first line it logged (the cause), then its exception
    with the error code named."""
    text = first_line(exc, limit=300)
    match = re.search(r"error:? 0x:?([0-9a-fA-F]+)", text)
    name = _ERRORS.get(int(match.group(1), 16)) if match else None
    text = f"{text} {name}" if name else text
    causes = [line for line in log if "cpuinfo" not in line]  # its threadpool's CPU probe: chatter
    return first_line(ValueError(f"{_LOG_PREFIX.sub('', causes[0])} ({text})"), limit=300) if causes else text


@contextlib.contextmanager
def loading(path: str | Path, log: list[str]) -> Iterator[None]:
    """ExecuTorch's failures while loading `path` as one-line ModelLoadErrors, with the cause it logged."""
    try:
        with engine_log(log):
            yield
    except DeployError:
        raise
    except Exception as exc:  # RuntimeError with an error code; IndexError for a non-tensor input
        raise ModelLoadError(f"ExecuTorch cannot load {path}: {executorch_reason(exc, log)}") from exc


class ExecuTorchBackend(Backend):
    name = "executorch"
    format = "executorch"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        # `threads` is not applied: ExecuTorch runs XNNPACK on one threadpool per process, with no
        # per-program setting (executorch 1.4.1); its only setter, _unsafe_reset_threadpool, is
        # private and unsafe while any other program runs, so library code leaves it alone.
        if device not in ("auto", "cpu"):
            raise BackendUnavailableError(
                f"the executorch backend runs on the CPU (XNNPACK); --device {device} is not it"
            )
        self._torch, et_runtime = _import_executorch()
        self.path = path
        self.device = "cpu"
        self._program = self._forward = None
        self.load_log: list[str] = []  # what ExecuTorch logged while loading (engine_log)
        # A method runs in memory planned once for it: two threads calling it at once would share it.
        self._run_lock = threading.Lock()
        check_pte(path)
        try:
            self._open(et_runtime, path)
        except BaseException:
            self.close()  # no program left behind, even while the error's traceback lives
            raise

    def _open(self, et_runtime: Any, path: str | Path) -> None:
        with loading(path, self.load_log):
            # By path: ExecuTorch maps the file rather than copying it (a load from bytes would).
            self._program = et_runtime.load_program(str(path))
            names = self._program.method_names
            if FORWARD not in names:
                raise ModelLoadError(f"{path} has no {FORWARD!r} method (it has {', '.join(sorted(names))})")
            self.metadata = self._read_metadata(names)
            self.io = self._declared_io(self._program.metadata(FORWARD))  # declared, not loaded yet

    def configure(self, metadata: ArtifactMetadata) -> None:
        self._load_forward()

    def _load_forward(self) -> Any:
        """`forward`, loaded on first need (its delegates init: XNNPACK packs the weights). Not in
        __init__: runtime.load checks the weights' hash in between, and ExecuTorch 1.4.1 aborts the
        whole process on some damaged XNNPACK blobs (its logger throws on a non-UTF-8 byte)."""
        if self._forward is None:
            with loading(self.path, self.load_log):
                self._forward = self._program.load_method(FORWARD)
        return self._forward

    def _read_metadata(self, names: set[str]) -> ArtifactMetadata | None:
        """The metadata from its constant method, or None for a program exported elsewhere."""
        if METADATA_METHOD not in names:
            return None
        values = self._program.load_method(METADATA_METHOD).execute([])
        if len(values) != 1 or not isinstance(values[0], str):
            raise ModelLoadError(f"{self.path}: its {METADATA_METHOD} method does not return one string")
        return ArtifactMetadata.from_json(values[0], source=self.path)

    def _declared_io(self, meta: Any) -> ModelIO:
        """What `forward` takes, refused at load unless it is one float (N, 3, H, W) tensor."""
        if meta.num_inputs() != 1 or meta.num_outputs() < 1:
            raise ModelLoadError(
                f"{self.path} has {meta.num_inputs()} inputs and {meta.num_outputs()} outputs; an image "
                f"classifier has one input"
            )
        tensor = meta.input_tensor_meta(0)
        shape, kind = tuple(tensor.sizes()), int(tensor.dtype())
        if kind not in _DTYPES or len(shape) != 4 or shape[1] != 3:
            raise ModelLoadError(
                f"{self.path} takes an input of shape {shape} (ExecuTorch dtype {kind}); alexnet-deploy "
                f"runs image classifiers that take one (N, 3, H, W) float tensor"
            )
        out = tuple(meta.output_tensor_meta(0).sizes())
        batch = self._batch(shape[0])
        self._expected = f"(N, 3, {shape[2]}, {shape[3]}) with N at most {shape[0]}"
        return ModelIO(
            input_name=self.metadata.input_name if self.metadata else "input",
            input_shape=(batch, 3, shape[2], shape[3]),
            output_name=self.metadata.output_name if self.metadata else "logits",
            num_outputs=out[-1] if len(out) == 2 else None,
            input_dtype=_DTYPES[kind],
        )

    def _batch(self, planned: int) -> int | None:
        """The batch the graph declares (None: any up to max_batch). ExecuTorch reports the memory
        plan's sizes, the upper bound of a dynamic batch, so a dynamic and a fixed batch read alike:
        the metadata says which. A foreign program runs at its planned batch (the predictor pads to
        it), which either kind takes."""
        embedded = self.metadata
        if embedded is None or embedded.batch_size is not None:
            return planned
        if embedded.max_batch is None or embedded.max_batch > planned:
            # The plan is what the engine enforces: never call it with more than it holds.
            self.metadata = dataclasses.replace(embedded, max_batch=planned)
        return None

    def run(self, batch: np.ndarray) -> np.ndarray:
        # (N, 3, H, W) float32 -> (N, classes) float32; ExecuTorch returns fresh tensors (not views
        # of its planned output buffer: measured), so the next call cannot overwrite this result.
        feed = np.ascontiguousarray(batch, dtype=self.io.input_dtype)
        with self._run_lock:
            forward = self._load_forward()
            try:
                out = forward.execute([self._torch.from_numpy(feed)])[0]
            except Exception as exc:  # RuntimeError: "method->set_inputs() ... failed with error 0x10"
                raise run_failed(self.path, RuntimeError(executorch_reason(exc)), feed, self._expected) from exc
        if not isinstance(out, self._torch.Tensor):
            reason = TypeError(f"it returned a {type(out).__name__}, not a tensor of logits")
            raise run_failed(self.path, reason, feed, self._expected)
        return out.float().numpy()

    def close(self) -> None:
        self._forward = self._program = None
