"""What the torch-based backends share (TorchScript here, the `pytorch` checkpoint plugin in
alexnet/), and the one device rule every torch device flag follows. torch is never imported at
module level: callers pass the module in, after `import_torch`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.backends import DEVICES, BackendUnavailableError, run_failed
from runtime.errors import DeployError, first_line


def import_torch(backend: str) -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"the {backend} backend needs PyTorch (pip install torch); without it, export to ONNX and use --backend onnxruntime"
        ) from None
    return torch


def available_torch_devices(torch: Any) -> list[str]:
    """The device kinds this PyTorch can use, in `auto`'s order of preference: cuda, mps, cpu."""
    found = ["cuda"] if torch.cuda.is_available() else []
    found += ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else []
    return [*found, "cpu"]


def resolve_torch_device(torch: Any, device: str) -> Any:
    """The one rule for every torch device flag (training, the torch backends, benchmarks):
    auto -> cuda, else mps, else cpu; cuda, cuda:N and mps must exist when asked for by name."""
    if device == "auto":
        return torch.device(available_torch_devices(torch)[0])
    kind = device.split(":")[0]
    if kind not in DEVICES or (kind != "cuda" and ":" in device):  # "auto" is settled above
        raise BackendUnavailableError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind not in available_torch_devices(torch):
        what = "sees no CUDA device" if kind == "cuda" else "has no MPS device (Metal on Apple silicon)"
        raise BackendUnavailableError(f"--device {device}: this PyTorch {what}; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:  # "cuda:x"
        raise BackendUnavailableError(f"unknown device {device!r}: {first_line(exc)}") from exc


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
            raise run_failed(path, exc, batch, expected) from exc
        if not isinstance(out, torch.Tensor):
            raise run_failed(
                path, TypeError(f"it returned a {type(out).__name__}, not a tensor of logits"), batch, expected
            )
        return out.float().cpu().numpy()
