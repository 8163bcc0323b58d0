"""TorchScript archives (torch.jit.save) on PyTorch. torch is imported only when one is opened.

The metadata travels in the archive's ``_extra_files`` entry ``alexnet_deploy.json``.
`resolve_torch_device` is shared with the `pytorch` checkpoint backend (alexnet.backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelIO, ModelLoadError, check_model_path, run_failed
from runtime.errors import DeployError, first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata

EXTRA_FILE = f"{METADATA_KEY}.json"


def import_torch(backend: str) -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"the {backend} backend needs PyTorch (pip install torch); without it, export to ONNX and use --backend onnxruntime"
        ) from None
    return torch


def resolve_torch_device(torch: Any, device: str) -> Any:
    """auto -> cuda if present, else cpu; cuda/mps must exist when asked for by name."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda: this PyTorch sees no CUDA device; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendUnavailableError("--device mps needs PyTorch with Metal on Apple silicon; use --device cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise BackendUnavailableError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return torch.device(device)


def run_module(
    torch: Any,
    module: Any,
    batch: np.ndarray,
    device: Any,
    dtype: Any,
    *,
    path: Any = "the model",
    expected: str = "(N, 3, H, W)",
) -> np.ndarray:
    """(N, 3, H, W) numpy -> module on `device` in `dtype` -> (N, classes) float32 numpy.

    A failure inside the module (a foreign model built for other shapes) is a one-line
    ModelRunError naming `path`, the `expected` input and the batch given.
    """
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(device=device, dtype=dtype)
        try:
            out = module(x)
        except DeployError:
            raise  # already says what to do (e.g. alexnet's InputTooSmallError)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # torch and TorchScript raise these
            raise run_failed(path, exc, batch, expected) from None
        if not isinstance(out, torch.Tensor):
            raise run_failed(
                path, TypeError(f"it returned a {type(out).__name__}, not a tensor of logits"), batch, expected
            )
        return out.float().cpu().numpy()


class TorchScriptBackend(Backend):
    name = "torchscript"
    format = "torchscript"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        torch = self._torch = import_torch(self.name)
        self.path = path
        check_model_path(Path(path))
        # `threads` is not applied here: torch's thread count is process-wide, so the application
        # sets it (alexnet-run --threads does, at its entry point: runtime.cliutil.set_torch_threads).
        self._device = resolve_torch_device(torch, device)
        extra = {EXTRA_FILE: ""}
        try:
            self.module = torch.jit.load(str(path), map_location=self._device, _extra_files=extra).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            first = first_line(exc)
            raise ModelLoadError(f"{path} is not a loadable TorchScript archive: {first}") from None
        text = extra[EXTRA_FILE]
        self.metadata = ArtifactMetadata.from_json(text, source=path) if text else None
        # fp16 exports hold half weights and want half input; the weights say which.
        param = next(self.module.parameters(), None)
        self._dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        self.device = str(self._device)
        # TorchScript does not declare shapes; the metadata (or the user) supplies them.
        shape = self.metadata.input_shape if self.metadata else (None, 3, None, None)
        self.io = ModelIO(
            input_name=self.metadata.input_name if self.metadata else "input",
            input_shape=tuple(shape),
            output_name=self.metadata.output_name if self.metadata else "logits",
            num_outputs=None,
        )

    def configure(self, metadata: ArtifactMetadata) -> None:
        self._expected = (
            "(" + ", ".join("N" if d is None else str(d) for d in metadata.input_shape) + ") from its metadata"
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        return run_module(
            self._torch,
            self.module,
            batch,
            self._device,
            self._dtype,
            path=self.path,
            expected=getattr(self, "_expected", "(N, 3, H, W)"),
        )
