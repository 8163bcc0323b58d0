"""Timing primitives: run a step until a budget is spent, and summarize what it took.

A "block" is one runner's timed iterations in one round; `benchmarks.suite` interleaves
blocks of every runner over several rounds so that machine noise lands on all of them and
shows up as the spread between rounds (not as a silent bias against whoever ran last).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# A row whose round medians differ by more than this fraction of its median gets a warning.
SPREAD_WARNING = 0.10

Clock = Callable[[], float]

# wall: elapsed time, what a user waits. cpu: the process's CPU time; with one thread and a CPU
# device it is what the work costs, and it does not count the time the process sat descheduled,
# so on a machine shared with other jobs it is the steadier measure of the backends' efficiency.
CLOCKS: dict[str, Clock] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass(frozen=True)
class Budget:
    """How long each row is timed: a fixed number of iterations, or a minimum time, in all rounds."""

    iterations: int | None = None  # total timed iterations per row (split over the rounds)
    min_time: float | None = None  # total seconds per row (split over the rounds)
    rounds: int = 3

    def __post_init__(self) -> None:
        if (self.iterations is None) == (self.min_time is None):
            raise ValueError("give exactly one of iterations or min_time")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if self.min_time is not None and not self.min_time > 0:
            raise ValueError(f"min_time must be positive, got {self.min_time}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")

    def block(self) -> tuple[int, float]:
        """(at least this many iterations, for at least this many seconds) in one round."""
        if self.iterations is not None:
            return math.ceil(self.iterations / self.rounds), 0.0
        return 1, self.min_time / self.rounds


def time_block(
    step: Callable[[], object],
    sync: Callable[[], None],
    *,
    min_iterations: int = 1,
    min_seconds: float = 0.0,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Seconds per call of `step`, each measured up to `sync()` (the device has finished).

    Runs at least `min_iterations` calls and keeps going until `min_seconds` have passed.
    The caller synchronizes before the first call, so no earlier work is counted.
    """
    times: list[float] = []
    start = clock()
    while len(times) < min_iterations or clock() - start < min_seconds:
        t0 = clock()
        step()
        sync()  # CUDA/MPS launch asynchronously: without this we would time the launch only
        times.append(clock() - t0)
    return times


def best_seconds(
    fn: Callable[[], object], sync: Callable[[], None], repeats: int, clock: Clock = time.perf_counter
) -> float:
    """The fastest of `repeats` calls, after one untimed call: how the machine's limits are measured
    (a floor must be optimistic, so the best try counts, not a typical one)."""
    fn()
    sync()  # the first call pays for allocation and thread start-up
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        sync()
        best = min(best, clock() - t0)
    return best


@dataclass(frozen=True)
class Stats:
    """Latency statistics in milliseconds over every timed iteration of a row."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    round_p50: tuple[float, ...]  # each round's median: how much the machine drifted
    spread: float  # (max - min of round_p50) / p50: 0.0 means the rounds agreed

    def to_dict(self) -> dict:
        data = asdict(self)
        data["round_p50"] = list(self.round_p50)
        return data


def summarize(rounds: Sequence[Sequence[float]]) -> Stats:
    """Per-round lists of seconds -> Stats in ms (percentiles pooled over all rounds, linear
    between closest ranks: numpy's default)."""
    rounds = [list(r) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no timings to summarize")
    ms = np.asarray([t for r in rounds for t in r], dtype=np.float64) * 1e3
    round_p50 = tuple(float(np.median(r)) * 1e3 for r in rounds)
    p50 = float(np.percentile(ms, 50))
    spread = (max(round_p50) - min(round_p50)) / p50 if p50 > 0 else 0.0
    return Stats(
        n=len(ms),
        p50=p50,
        p90=float(np.percentile(ms, 90)),
        p99=float(np.percentile(ms, 99)),
        mean=float(ms.mean()),
        std=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        min=float(ms.min()),
        max=float(ms.max()),
        round_p50=round_p50,
        spread=spread,
    )


def throughput(batch_size: int, mean_ms: float) -> float:
    """Images per second: all images over all time, i.e. the batch over the mean latency."""
    return batch_size / (mean_ms / 1e3) if mean_ms > 0 else float("inf")
