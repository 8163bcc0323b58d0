"""The `pytorch` runtime backend: run a training checkpoint (.pth / .safetensors) directly.

runtime/ cannot import the model code (the dependency points alexnet -> runtime), so this
backend is a plugin, registered in setup.cfg under the entry-point group
``alexnet_deploy.backends``; `runtime.load(path, backend="pytorch")` (or a checkpoint path
with backend="auto") finds it there. The metadata is built from the checkpoint, so it
predicts exactly like an exported artifact of the same checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet import __version__
from alexnet.checkpoint import load_checkpoint
from runtime.backends import Backend, ModelIO
from runtime.backends.torch_common import resolve_torch_device, run_module
from runtime.fileio import file_sha256
from runtime.metadata import ArtifactMetadata


def checkpoint_metadata(path: str | Path, checkpoint: Any) -> ArtifactMetadata:
    """The artifact metadata an export of this checkpoint would carry (dynamic batch, fp32)."""
    size = checkpoint.preprocess.crop
    return ArtifactMetadata(
        class_names=tuple(checkpoint.class_names),
        preprocess=checkpoint.preprocess,
        model_config=checkpoint.config.to_dict(),
        input_shape=(None, 3, size, size),
        precision="fp32",
        format="checkpoint",
        source_sha256=file_sha256(path),
        package_version=checkpoint.package_version or __version__,
        torch_version=torch.__version__,
    )


class PyTorchBackend(Backend):
    name = "pytorch"
    format = "checkpoint"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        # `threads` is not applied here: torch's thread count is process-wide, so the application
        # sets it (alexnet-run --threads does, at its entry point: runtime.cliutil.set_torch_threads).
        self._device = resolve_torch_device(torch, device)
        self.path = path
        checkpoint = load_checkpoint(path, map_location="cpu")
        self.model = checkpoint.build_model().to(self._device)
        self.metadata = checkpoint_metadata(path, checkpoint)
        self.device = str(self._device)
        self.io = ModelIO(
            input_name=self.metadata.input_name,
            input_shape=self.metadata.input_shape,
            output_name=self.metadata.output_name,
            num_outputs=checkpoint.config.num_classes,
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        # (N, 3, H, W) -> (N, classes), in eval mode (build_model sets it)
        return run_module(
            torch,
            self.model,
            batch,
            self._device,
            torch.float32,
            path=self.path,
            expected=f"(N, 3, {self.io.input_shape[2]}, {self.io.input_shape[3]})",
        )
