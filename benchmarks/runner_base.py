"""The steps every benchmark runner has (see `benchmarks.runners` for the runners themselves):

    runner.build()          once: load/compile the model on its device (may raise Skip)
    runner.prepare(batch)   per batch size: put the input where the engine wants it (untimed)
    runner.step()           one inference: the only thing timed
    runner.sync()           wait for the device (CUDA/MPS run asynchronously)
    runner.logits()         the last step's output as float32 numpy (checked against eager)
    runner.counters()       what the runner counted itself over the timed steps (default: nothing)
    runner.batch_info()     what this batch size's row adds to `info` (after prepare; default: nothing)

A module of its own so that runner modules can share it without importing each other.
"""

from __future__ import annotations

import abc
import time
from typing import Any, ClassVar

import numpy as np

from benchmarks.artifacts import Artifacts
from benchmarks.variant import FP32, Variant
from runtime.formats import artifact_bytes


class Runner(abc.ABC):
    backend: ClassVar[str]

    def __init__(self, artifacts: Artifacts, device: str, variant: Variant = FP32, threads: int | None = None) -> None:
        self.artifacts, self.device, self.variant, self.threads = artifacts, device, variant, threads
        self.artifact: str | None = None
        self.artifact_bytes: int | None = None
        self.build_s: float | None = None
        self.info: dict[str, Any] = {}

    @property
    def precision(self) -> str:
        return self.variant.precision

    @property
    def label(self) -> str:
        """Backend and variant, as progress lines show them: "pytorch fp32 channels_last"."""
        return f"{self.backend} {self.variant.label}"

    @classmethod
    def exports(cls, variant: Variant, device: str) -> list[tuple[str, str]]:
        """The artifacts (format, precision) this runner loads, made beforehand by the benchmark's parent
        process, once, as a user would export them, so every worker reads the same files (none by default)."""
        return []

    def build(self) -> None:
        t0 = time.perf_counter()
        self._build()
        self.build_s = time.perf_counter() - t0

    @abc.abstractmethod
    def _build(self) -> None: ...

    @abc.abstractmethod
    def prepare(self, batch: np.ndarray) -> None: ...

    @abc.abstractmethod
    def step(self) -> None: ...

    def sync(self) -> None:
        pass

    def start_block(self) -> None:
        """Called before each timed block (an e2e runner starts its stream of files here)."""

    def end_block(self) -> None:
        """Called after each timed block and after the warm-up: nothing of the runner may run on
        while another row is timed."""

    @abc.abstractmethod
    def logits(self) -> np.ndarray: ...

    def close(self) -> None:
        pass

    def reset_counters(self) -> None:
        """Forget what `counters` has counted (called after the warm-up, so only timed calls count)."""

    def counters(self) -> dict[str, Any]:
        """What the runner measured itself over the timed calls (the e2e rows: seconds in the model)."""
        return {}

    def batch_info(self) -> dict[str, Any]:
        """Notes for the row of the batch size last prepared (e.g. that it runs in parts, as alexnet-run does)."""
        return {}

    def _use_artifact(self, path: Any) -> None:
        self.artifact, self.artifact_bytes = str(path), artifact_bytes(path)
