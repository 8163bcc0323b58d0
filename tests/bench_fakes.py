"""Runners for the worker tests (tests/test_bench_workers.py): no model, no engine, so a worker
process starts in a blink. Module-level classes: a worker imports them by name."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from benchmarks.artifacts import Skip
from benchmarks.runner_base import Runner


class FakeRunner(Runner):
    """Answers zeros at once."""

    backend = "fake"

    def _build(self) -> None:
        self.info["pid"] = os.getpid()

    def prepare(self, batch: np.ndarray) -> None:
        self.batch = batch

    def step(self) -> None:
        self.out = np.zeros((len(self.batch), 10), np.float32)

    def logits(self) -> np.ndarray:
        return self.out


class BaselineRunner(FakeRunner):
    """Stands for eager fp32, which every suite run includes."""

    backend = "pytorch"


class RaisingRunner(FakeRunner):
    backend = "raising"

    def step(self) -> None:
        raise RuntimeError("kernel exploded\nsecond line of the report")


class KilledRunner(FakeRunner):
    """Dies by a signal in its first call, as a segfaulting engine would."""

    backend = "killed"

    def step(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class HangingRunner(FakeRunner):
    backend = "hanging"

    def step(self) -> None:
        time.sleep(3600)


class ExitingRunner(FakeRunner):
    backend = "exiting"

    def _build(self) -> None:
        os._exit(3)


class SkippingRunner(FakeRunner):
    backend = "skipping"

    def _build(self) -> None:
        raise Skip("no such engine here")


class NoModel:
    """Stands for benchmarks.artifacts.Artifacts in a suite run of fake runners: workers open no model."""

    workdir = "."

    class source:  # noqa: N801  (the attribute Artifacts has)
        image_size = 8

    def worker_source(self) -> None:
        return None

    def export_cache(self) -> dict:
        return {}

    def adopt(self, cache: dict) -> None:
        pass
