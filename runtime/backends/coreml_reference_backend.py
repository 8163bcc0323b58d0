"""`coreml-reference`: a Core ML package run by the numpy reference evaluator (runtime.mlprogram),
on any OS. Off macOS it is what `runtime.load` picks for a .mlpackage; slow next to Core ML, but
it computes what the program says (fp16 rounding included), so Linux can check a package by its
numbers. Needs coremltools only to read the package; no torch.

Inputs are what Core ML would receive: an image input gets the preprocessed batch turned back into
8-bit pixels (exact for pixels from an 8-bit image), as float32 (N, 3, H, W) in the channel order
the image type declares (RGB or BGR); the program's own first ops apply its scale and bias.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtime.backends import Backend, BackendUnavailableError, ModelLoadError, check_model_path, run_failed
from runtime.backends.coreml_backend import describe_spec, to_pixels
from runtime.errors import DeployError
from runtime.metadata import ArtifactMetadata
from runtime.mlprogram import (
    ProgramLoadError,
    ReferenceProgram,
    UnsupportedOpError,
    classifier_labels,
    import_coremltools,
    read_package,
)

NOTICE = (
    "note: Core ML predicts only on macOS; running {path} on the Core ML reference evaluator "
    "(numpy, op by op: slow, but the program's own numbers)"
)


class CoreMLReferenceBackend(Backend):
    name = "coreml-reference"
    format = "coreml"
    notice: ClassVar[str] = NOTICE

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None, **_: Any) -> None:
        check_model_path(Path(path))
        if device not in ("auto", "cpu"):
            raise BackendUnavailableError(
                f"the Core ML reference evaluator runs on the CPU; --device {device} is not it"
            )
        try:
            import_coremltools()
        except ProgramLoadError:
            raise BackendUnavailableError(
                "the coreml-reference backend reads the package with coremltools: pip install coremltools "
                "(or alexnet-deploy[coreml])"
            ) from None
        try:
            spec, program = read_package(path)
        except ProgramLoadError as exc:
            raise ModelLoadError(str(exc)) from exc
        self._open(spec, program, path)

    @classmethod
    def from_program(cls, spec: Any, program: Any, source: str) -> CoreMLReferenceBackend:
        """A backend for a package not saved yet (the export's int8 gate): its spec and MIL program."""
        backend = cls.__new__(cls)
        backend._open(spec, program, source)
        return backend

    def _open(self, spec: Any, program: Any, path: str | Path) -> None:
        self.path = path
        try:
            self.program = ReferenceProgram(program, str(path))
        except (ProgramLoadError, UnsupportedOpError) as exc:
            raise ModelLoadError(str(exc)) from exc
        self.device = "cpu (numpy)"
        self.metadata, self.image_input, self.io = describe_spec(spec, path)
        image_type = spec.description.input[0].type.imageType
        if self.image_input and image_type.colorSpace == image_type.GRAYSCALE:
            raise ModelLoadError(f"{path} takes grayscale images; alexnet-deploy runs RGB classifiers")
        self._bgr = self.image_input and image_type.colorSpace == image_type.BGR
        self._labels = classifier_labels(program)  # the score dictionary's keys, in the scores' order
        self.io = dataclasses.replace(self.io, num_outputs=len(self._labels) or None)
        # Set by configure (runtime.load, or the caller of from_program) before the first run.
        self._order: list[int] | None = None
        self._spec = None

    def configure(self, metadata: ArtifactMetadata) -> None:
        self._spec = metadata.preprocess
        if not self._labels:
            return  # not a classifier: the output tensor's columns are the classes, in order
        # Labels that are not the classifier's own (given for a foreign model; as many as its classes,
        # runtime.load checks) name its columns in order.
        same = sorted(metadata.class_names) == sorted(self._labels)
        self._order = [self._labels.index(name) for name in metadata.class_names] if same else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        # batch: (N, 3, H, W) -> logits (N, classes) in the metadata's class order.
        if self.image_input:
            feed = to_pixels(batch, self._spec).transpose(0, 3, 1, 2).astype(np.float32)  # (N, 3, H, W) 0..255
            feed = feed[:, ::-1] if self._bgr else feed
        else:
            feed = batch
        # A program whose input fixes batch 1 (every image input) runs one image at a time.
        per_run = 1 if self.program.inputs[self.io.input_name][2][0] == 1 else len(feed)
        try:
            parts = [
                self.program.run({self.io.input_name: feed[i : i + per_run]})[self.io.output_name]
                for i in range(0, len(feed), per_run)
            ]
        except DeployError as exc:
            raise run_failed(self.path, exc, batch, f"{self.io.input_shape}") from exc
        scores = np.concatenate([np.asarray(p, np.float32).reshape(len(p), -1) for p in parts])
        return scores if self._order is None else scores[:, self._order]
