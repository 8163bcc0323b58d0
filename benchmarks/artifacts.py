"""The model under test and the artifacts exported from it, made once per run.

Every backend benchmarks the same weights: a checkpoint the user gives, or a freshly
initialized AlexNet saved as a checkpoint in the work directory (speed does not depend on
the weights' values). Every artifact, of every format and precision, comes from
`export.export_artifact`, exactly as a user would make it (`alexnet-export`), and is made once
per run: the workers of all batch sizes (and the end-to-end rows) read the same file. int8 ones
are calibrated and gated with `benchmarks.quantized.quantize_options`.

A format whose batch is part of the file (the format table's `fixed_batch`: LiteRT) is exported once
per batch size a row times (`get(fmt, precision, batch)`), as a user who runs batches of N exports
with `--batch-size N`; alexnet-report turns that off (`per_batch=False`) to time its own files.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import formats
from runtime.errors import DeployError


class Skip(Exception):
    """This backend (or device) cannot run here; the message says why, in one line."""


def import_optional(name: str) -> Any:
    """Module `name` of an optional engine (openvino, onnxruntime), or Skip saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise Skip(f"{name} not installed (pip install 'alexnet-deploy[bench]')") from None


@dataclass
class Source:
    checkpoint_path: Path
    checkpoint: Any  # alexnet.checkpoint.Checkpoint
    image_size: int
    given: bool  # True when the user passed the checkpoint (else a fresh model was saved)

    @property
    def config(self) -> Any:
        return self.checkpoint.config

    def build_model(self) -> Any:
        """A new eval-mode AlexNet with the checkpoint's weights, on the CPU, in fp32."""
        return self.checkpoint.build_model()

    def describe(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint_path) if self.given else None,
            "fresh": not self.given,
            "image_size": self.image_size,
            **self.config.to_dict(),
        }


def open_source(
    checkpoint: str | os.PathLike | None,
    workdir: Path,
    *,
    variant: str = "torchvision",
    num_classes: int = 1000,
    image_size: int | None = None,
) -> Source:
    """Load `checkpoint`, or build and save a fresh model of `variant` when it is None."""
    from alexnet.checkpoint import Checkpoint, default_class_names, load_checkpoint, save_checkpoint
    from alexnet.model import build_alexnet
    from runtime.preprocess import PreprocessSpec

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        size = image_size or ckpt.preprocess.crop
        return Source(Path(checkpoint), ckpt, size, given=True)
    try:
        model = build_alexnet(variant=variant, num_classes=num_classes)
    except ValueError as exc:
        raise DeployError(str(exc)) from exc
    size = image_size or model.config.default_image_size
    names = default_class_names(num_classes)
    ckpt = Checkpoint(
        config=model.config,
        model_state=model.state_dict(),
        class_names=names,
        preprocess=PreprocessSpec.for_image_size(size),
    )
    path = save_checkpoint(ckpt, workdir / f"fresh-{variant}.pth")
    return Source(path, ckpt, size, given=False)


@dataclass
class Artifacts:
    """Exports of one Source, made on first request and reused, keyed by `key`."""

    source: Source
    workdir: Path
    # True: a fixed-batch format gets one file per batch size asked for (alexnet-bench). False: one file per
    # format and precision, export's default batch, whatever batch is asked for (alexnet-report's own files:
    # its runners run a batch of another size as alexnet-run does, through the Predictor, which pads and splits).
    per_batch: bool = True
    _paths: dict[tuple, Path] = field(default_factory=dict)
    _errors: dict[tuple, str] = field(default_factory=dict)

    def key(self, fmt: str, precision: str = "fp32", batch: int | None = None) -> tuple:
        """(fmt, precision), and the batch for a fixed-batch format's file exported at `batch` (see per_batch)."""
        if batch is None or not self.per_batch or not formats.get(fmt).fixed_batch:
            return (fmt, precision)
        return (fmt, precision, batch)

    def get(self, fmt: str, precision: str = "fp32", batch: int | None = None) -> Path:
        """The `fmt` artifact at `precision`; `batch`: the batch a row runs (only a fixed-batch format's file
        depends on it, and only with per_batch)."""
        key = self.key(fmt, precision, batch)
        if key in self._errors:
            raise Skip(self._errors[key])
        if key not in self._paths:
            try:
                self._paths[key] = self._export(fmt, precision, key[2] if len(key) > 2 else None)
            except Skip as exc:
                self._errors[key] = str(exc)
                raise
        return self._paths[key]

    def _export(self, fmt: str, precision: str, batch: int | None = None) -> Path:
        from export import export_artifact
        from export.common import SUFFIXES

        name = f"model-{precision}" + (f"-batch{batch}" if batch is not None else "")
        output = self.workdir / f"{name}{SUFFIXES[fmt]}"
        # Core ML: a tensor input takes the same float batch as every other backend (an image input is batch 1).
        extra: dict[str, Any] = {"coreml_input": "tensor"} if fmt == "coreml" else {}
        if precision == "int8":
            from benchmarks.quantized import quantize_options

            # quiet: its progress lines would break the benchmark's; the gate's outcome is in the artifact
            extra.update(quantize=quantize_options(self.source), echo=lambda _line: None)
        try:
            return Path(
                export_artifact(
                    self.source.checkpoint_path,
                    fmt,
                    output,
                    batch_size=batch,  # None: a dynamic batch (a fixed-batch format: export's default)
                    precision=precision,
                    image_size=self.source.image_size,
                    **extra,
                )
            )
        except DeployError as exc:
            raise Skip(f"cannot export {fmt} ({precision}): {exc}") from exc
        except ImportError as exc:  # a converter of the bench extra (openvino, nncf) is missing
            raise Skip(f"{exc.name or 'a converter'} not installed (pip install 'alexnet-deploy[bench]')") from exc

    def export_cache(self) -> dict[str, Any]:
        """The exports made (or refused) so far, picklable: a worker process reuses them instead of exporting again."""
        paths = {k: str(v) for k, v in self._paths.items()}
        return {"paths": paths, "errors": dict(self._errors), "per_batch": self.per_batch}

    def worker_source(self) -> dict[str, Any]:
        """What a worker process needs to open the same model (`reopen_artifacts`)."""
        return source_spec(self.source)

    def adopt(self, cache: dict[str, Any]) -> None:
        """Take over another process's exports (`export_cache`), and its per_batch policy when it says."""
        self.per_batch = cache.get("per_batch", self.per_batch)
        self._paths.update({k: Path(v) for k, v in cache.get("paths", {}).items()})
        self._errors.update(cache.get("errors", {}))


def source_spec(source: Source) -> dict[str, Any]:
    """What a worker process needs to open the same Source: the checkpoint file, not its 244 MB of weights."""
    return {"checkpoint": str(source.checkpoint_path), "image_size": source.image_size, "given": source.given}


def reopen_artifacts(spec: dict[str, Any] | None, workdir: str | None, cache: dict[str, Any]) -> Artifacts | None:
    """In a worker: the parent's Source (from `source_spec`) and its exports so far; None without a source."""
    if spec is None:
        return None
    from alexnet.checkpoint import load_checkpoint

    source = Source(Path(spec["checkpoint"]), load_checkpoint(spec["checkpoint"]), spec["image_size"], spec["given"])
    artifacts = Artifacts(source, Path(workdir or "."))
    artifacts.adopt(cache)
    return artifacts
