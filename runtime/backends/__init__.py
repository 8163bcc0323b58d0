"""Backends: the engines that run an artifact, behind one small interface.

A backend opens one model file, reports what its graph declares (`ModelIO`) and the
alexnet-deploy metadata embedded in it (or None for a foreign model), and turns a
preprocessed float32 batch (N, 3, H, W) into logits (N, classes). Everything else
(preprocessing, batching, softmax, top-k) lives in `runtime.predictor`.

Built-in backends (onnxruntime, openvino, litert, coreml, coreml-reference, torchscript) are imported only when
used, so `import runtime` pulls in neither onnxruntime nor torch. Other packages add backends
through the entry-point group ``alexnet_deploy.backends``; this is how the `pytorch`
backend (which needs the model code in `alexnet/`) plugs in without runtime importing
alexnet::

    [options.entry_points]
    alexnet_deploy.backends =
        pytorch = alexnet.runtime_plugin:PyTorchBackend
"""

from __future__ import annotations

import abc
import importlib
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtime import formats
from runtime.errors import DeployError, first_line
from runtime.fileio import special_file_kind
from runtime.metadata import ArtifactMetadata

ENTRY_POINT_GROUP = "alexnet_deploy.backends"
DEVICES = ("auto", "cpu", "cuda", "mps")

# name -> "module:attribute", imported on first use.
_BUILTIN = {
    "onnxruntime": "runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "coreml": "runtime.backends.coreml_backend:CoreMLBackend",
    "coreml-reference": "runtime.backends.coreml_reference_backend:CoreMLReferenceBackend",
    "torchscript": "runtime.backends.torchscript_backend:TorchScriptBackend",
    "openvino": "runtime.backends.openvino_backend:OpenVinoBackend",
    "litert": "runtime.backends.litert_backend:LiteRtBackend",
}
_registered: dict[str, type[Backend]] = {}

# Checkpoints (run by the `pytorch` plugin) and TorchScript archives share suffixes.
_CHECKPOINT_SUFFIXES = (".pth", ".safetensors", ".ckpt", ".bin")
_TORCH_SUFFIXES = _CHECKPOINT_SUFFIXES + formats.FORMATS["torchscript"].suffixes


class ModelLoadError(DeployError, ValueError):
    """The model file is missing, unreadable, or of a kind no backend opens."""


class BackendUnavailableError(DeployError, RuntimeError):
    """The backend (or the device asked of it) cannot run on this machine."""


class ModelRunError(DeployError, RuntimeError):
    """The engine failed running a batch (usually: the model takes another input than it was given)."""


def run_failed(path: Any, exc: BaseException, batch: np.ndarray, expected: str) -> ModelRunError:
    """The error for a failed `run`: the model, what it expects and what it was given, the engine's reason."""
    return ModelRunError(
        f"{path} failed on an input of shape {tuple(batch.shape)} {batch.dtype} "
        f"(the model declares {expected}): {first_line(exc, limit=300)}"
    )


@dataclass(frozen=True)
class ModelIO:
    """What the model graph itself declares; None where a dimension is dynamic or unknown."""

    input_name: str
    input_shape: tuple[int | None, ...]  # (batch, 3, H, W)
    output_name: str
    num_outputs: int | None  # classes, when the graph says
    input_dtype: Any = np.float32  # what `run` casts the batch to


class Backend(abc.ABC):
    """One opened model. Subclasses load it once in __init__ and reuse it for every `run`.

    Constructor contract (plugins follow it too): ``Backend(path, *, device="auto",
    threads=None, **options)``; unknown options are ignored by backends without them.
    """

    name: ClassVar[str]
    format: ClassVar[str]  # the artifact format it reads: onnx | coreml | torchscript | checkpoint

    metadata: ArtifactMetadata | None  # embedded alexnet-deploy metadata; None for a foreign model
    io: ModelIO
    device: str  # the device (or providers) actually in use, for display
    # A line the command-line tools print before running (with {path}): e.g. that a slow stand-in runs.
    notice: ClassVar[str | None] = None

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> (N, classes) float32 logits. N respects the model's batch size."""

    def configure(self, metadata: ArtifactMetadata) -> None:
        """Receive the final metadata (with any user overrides) before the first `run`."""

    def close(self) -> None:
        """Release the session/model; the default lets garbage collection do it."""


def register_backend(name: str, backend: type[Backend]) -> None:
    """Add (or replace) a backend at run time, e.g. from a test or an application."""
    _registered[name] = backend


def backend_names() -> list[str]:
    """Every backend name known here, without importing any of them."""
    names = set(_BUILTIN) | set(_registered) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def get_backend(name: str) -> type[Backend]:
    """The backend class for `name`: registered, built in, or from an installed plugin."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        module_name, attr = _BUILTIN[name].split(":")
        return getattr(importlib.import_module(module_name), attr)
    plugins = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not plugins:
        hint = " (it comes with the alexnet-deploy package: pip install -e . registers it)" if name == "pytorch" else ""
        raise BackendUnavailableError(f"no backend named {name!r}{hint}; available: {', '.join(backend_names())}")
    try:
        return plugins[0].load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        fmt = formats.for_backend(name)  # the `pytorch` plugin runs checkpoints, which are no format here
        fix = formats.install_hint(fmt.runtime_extra) if fmt else "pip install torch"
        raise BackendUnavailableError(
            f"the {name} backend cannot be imported ({missing} missing: {exc}); install it "
            f"({fix}) or export the model to ONNX and use --backend onnxruntime"
        ) from exc


def detect_backend(path: str | Path) -> str:
    """Which backend opens `path`: the format table's (runtime.formats) for its suffix; where suffixes
    are shared (a TorchScript .pt, a checkpoint), its contents say."""
    path = Path(path)
    check_model_path(path)
    suffix = path.suffix.lower()
    fmt = formats.for_suffix(suffix)
    if path.is_dir():
        if (fmt is not None and fmt.directory and fmt.backend and suffix == fmt.suffix) or (
            path / "Manifest.json"
        ).is_file():
            return _engine(fmt or formats.FORMATS["coreml"])
        raise ModelLoadError(f"{path} is a directory, not a model artifact ({_known_suffixes()} or a checkpoint)")
    if fmt is not None and fmt.backend and fmt.name != "torchscript":
        return _engine(fmt)
    if suffix == ".safetensors":
        return "pytorch"
    if zipfile.is_zipfile(path):
        return _archive_backend(path, suffix)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:1] == b"\x80" and suffix in _TORCH_SUFFIXES:
        return "pytorch"  # torch.save's legacy (pre-1.6) pickle format
    if suffix in _TORCH_SUFFIXES:
        raise ModelLoadError(
            f"{path} is not a PyTorch checkpoint or TorchScript archive (neither a torch.save zip archive nor a pickle)"
        )
    raise ModelLoadError(
        f"cannot tell which backend runs {path} (suffix {suffix or 'none'!r}); name it {_known_suffixes()}, "
        f".pth (checkpoint), or pass --backend"
    )


def _archive_backend(path: Path, suffix: str) -> str:
    """torch.jit.save and torch.save both write zip archives; only TorchScript has code/."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path} is a damaged archive: {exc}") from exc
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"
    if suffix in _TORCH_SUFFIXES:
        raise ModelLoadError(
            f"{path} is a zip archive but not a PyTorch checkpoint or TorchScript archive (no data.pkl or code/ inside)"
        )
    raise ModelLoadError(f"cannot tell which backend runs {path}, a zip archive; pass --backend")


def _engine(fmt: formats.Format) -> str:
    return coreml_backend_name() if fmt.backend == "coreml" else str(fmt.backend)


def _known_suffixes() -> str:
    known = [f"{s} ({f.title})" for f in formats.FORMATS.values() if f.backend for s in f.suffixes]
    return ", ".join(known)


def coreml_backend_name() -> str:
    """Core ML itself on macOS; elsewhere, where Core ML cannot predict, the numpy reference evaluator."""
    return "coreml" if sys.platform == "darwin" else "coreml-reference"


def check_model_path(path: Path) -> None:
    """The model exists and is a regular file or a directory (a .mlpackage): reading a FIFO
    or a device would block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelLoadError(f"model {path} does not exist") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model {path}: {exc.strerror or exc}") from exc
    kind = special_file_kind(mode)
    if kind not in (None, "a directory"):
        raise ModelLoadError(f"model {path} is {kind}, not a regular file; not read")


def platform_name() -> str:
    return {"darwin": "macOS", "linux": "Linux", "win32": "Windows"}.get(sys.platform, sys.platform)
