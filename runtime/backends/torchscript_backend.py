"""TorchScript archives (torch.jit.save) on PyTorch. torch is imported only when one is opened.

The metadata travels in the archive's ``_extra_files`` entry ``alexnet_deploy.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import Backend, ModelIO, ModelLoadError, check_model_path
from runtime.backends.torch_common import import_torch, resolve_torch_device, run_module
from runtime.errors import first_line
from runtime.metadata import METADATA_KEY, ArtifactMetadata

EXTRA_FILE = f"{METADATA_KEY}.json"


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
            raise ModelLoadError(f"{path} is not a loadable TorchScript archive: {first}") from exc
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
