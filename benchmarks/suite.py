"""Run the benchmark: every backend x device x batch size, interleaved, beside the floor.

Per device: measure the machine's limits, start one worker process per runner
(`benchmarks.isolation`: engines sharing a process steal each other's cores) and build it
once, then per batch size warm each one up and time them in rounds, each round visiting the
workers in another order while the others wait, idle, on their pipes. Every row keeps its
round medians, so a machine that got busier halfway shows as a wide spread on all rows
instead of a hidden bias on some. A worker that raises, crashes or hangs gives a failed row.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import e2e, roofline
from benchmarks.artifacts import Artifacts, Skip
from benchmarks.isolation import WorkerRunner, running
from benchmarks.machine import Limits, best_limits, measure_limits
from benchmarks.notices import row_warnings
from benchmarks.peak import cpu_peak, floor_note, with_peak
from benchmarks.runners import RUNNERS, torch_device
from benchmarks.timing import CLOCKS, Budget, summarize, throughput
from benchmarks.variant import FP32, Variant, variants
from runtime.errors import first_line

BASELINE = ("pytorch", FP32)  # (backend, variant): every speed-up is against it, same device and batch size
PAUSE_S = 0.05  # between blocks, so one engine's spinning worker threads park before the next runs


@dataclass
class Settings:
    backends: Sequence[str]
    devices: Sequence[str]
    batch_sizes: Sequence[int]
    budget: Budget
    warmup: int = 3
    threads: int | None = None
    seed: int = 0
    measure: dict[str, Any] = field(default_factory=dict)  # measure_limits options (sizes, mbytes, repeats)
    remeasure: bool = True  # measure the limits again after each batch size (and keep the best)
    clock: str = "wall"  # a key of timing.CLOCKS
    timeout_s: float = 600.0  # a worker silent this long beyond its block's budget is killed: a failed row
    build_timeout_s: float = 1800.0  # the same for a build (exports, NNCF, torch.compile take minutes)
    precisions: Sequence[str] | None = None  # of variant.PRECISIONS; None: every variant of each backend
    # Exactly these (backend, variant) on every device instead of each backend's variants (alexnet-report:
    # one row per exported artifact); the baseline is added first if missing.
    pairs: Sequence[tuple[str, Variant]] | None = None


@dataclass
class Row:
    """One result, as the JSON keeps it: the variant by its label, beside its precision."""

    backend: str
    variant: str  # Variant.label
    device: str
    batch_size: int | None
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    precision: str = "fp32"
    latency_ms: dict[str, Any] | None = None  # timing.Stats.to_dict()
    throughput_ips: float | None = None
    speedup: float | None = None  # baseline p50 / this p50
    floor_ms: float | None = None
    floor_fraction: float | None = None  # floor_ms / p50
    floor_note: str | None = None  # set when the row beats its floor (fraction > 1): why that can be
    bound: str | None = None  # what sets the floor: compute | memory
    max_rel_diff: float | None = None  # max |logits - eager logits| / max |eager logits|
    preprocess_share: float | None = None  # e2e rows: time outside the model call / whole call
    model_ips: float | None = None  # e2e rows: images/s of the model calls alone, in the same steps
    artifact: str | None = None
    artifact_bytes: int | None = None
    build_s: float | None = None
    warmup_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.variant}"

    @property
    def is_baseline(self) -> bool:
        return (self.backend, self.variant) == (BASELINE[0], BASELINE[1].label)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Result:
    rows: list[Row]
    limits: dict[str, Limits]
    floors: dict[str, list[roofline.Floor]]
    warnings: list[str]


def _runner_row(runner: WorkerRunner, batch_size: int | None, **values: Any) -> Row:
    return Row(
        runner.backend,
        runner.variant.label,
        runner.device,
        batch_size,
        precision=runner.precision,
        artifact=runner.artifact,
        artifact_bytes=runner.artifact_bytes,
        build_s=runner.build_s,
        info=dict(runner.info),
        **values,
    )


def run_suite(
    artifacts: Artifacts, cost: roofline.ModelCost, settings: Settings, progress: Callable[[str], None] | None = None
) -> Result:
    """Benchmark everything in `settings`; never raises for one backend's failure (its row says why)."""
    say = progress or (lambda _msg: None)
    rows: list[Row] = []
    limits: dict[str, Limits] = {}
    floors: dict[str, list[roofline.Floor]] = {}
    # threads, artifacts, timeouts, and the batch sizes (a fixed-batch format is exported for each) of every worker
    common = (settings.threads, artifacts, (settings.timeout_s, settings.build_timeout_s), settings.batch_sizes)
    for device in settings.devices:
        pairs = runner_pairs(settings.backends, device, settings.precisions, settings.pairs)
        workers = [WorkerRunner(runner_class(b, v), device, v, *common) for b, v in pairs]
        for name in dict.fromkeys(e2e.photo_set(v) for _, v in pairs if e2e.is_e2e(v)):
            e2e.write_images(artifacts.workdir, name)  # written once, here: every e2e worker reads the same files
        try:
            torch_device(device)
        except Skip as exc:
            rows += [_not_ok_row(w, None, exc) for w in workers]
            continue
        precisions = tuple(dict.fromkeys(w.precision for w in workers))
        measure = functools.partial(
            measure_limits, device, precisions, clock=CLOCKS[settings.clock], **settings.measure
        )
        say(f"{device}: measuring matmul rate and memory bandwidth")
        measured = [measure()]
        with running(workers):  # every worker closed, or killed, whatever happens (Ctrl-C included)
            ready = _build(workers, rows, say)
            for n in settings.batch_sizes:
                rows += _time_batch(ready, n, artifacts.source.image_size, settings, say)
                if settings.remeasure:  # on a shared machine the quietest moment gives the truest peak
                    say(f"{device}: measuring matmul rate and memory bandwidth again")
                    measured.append(measure())
        limits[device] = with_peak(best_limits(measured), cpu_peak(settings.threads) if device == "cpu" else None)
        floors[device] = [
            roofline.floor(cost, n, gflops=limits[device].gflops(p), gbps=limits[device].bandwidth_gbps, precision=p)
            for p in precisions
            for n in settings.batch_sizes
        ]
    _add_comparisons(rows, cost, limits)
    return Result(rows, limits, floors, row_warnings(rows))


def _not_ok_row(runner: WorkerRunner, batch_size: int | None, exc: Exception) -> Row:
    """Skip: "skipped" (cannot run here); anything else: "failed" (raised, crashed, hung), in one line either way."""
    if isinstance(exc, Skip):
        return _runner_row(runner, batch_size, status="skipped", reason=str(exc))
    return _runner_row(runner, batch_size, status="failed", reason=first_line(exc))


def _build(workers: list[WorkerRunner], rows: list[Row], say: Callable[[str], None]) -> list[WorkerRunner]:
    """Start each worker and build its runner, one at a time (a build must not compete with another for the
    cores, and later ones reuse the exports of earlier ones): the workers ready; a row for each of the others."""
    ready = []
    for worker in workers:
        say(f"{worker.device}: building {worker.label}")
        try:
            worker.build()
            ready.append(worker)
        except Exception as exc:  # a broken backend must not stop the others
            rows.append(_not_ok_row(worker, None, exc))
    return ready


def runner_class(backend: str, variant: Variant) -> type:
    """The runner of a (backend, variant): an e2e variant runs the end-to-end runner of that backend."""
    return e2e.E2E_RUNNERS[backend] if e2e.is_e2e(variant) else RUNNERS[backend]


def runner_pairs(
    backends: Sequence[str],
    device: str,
    precisions: Sequence[str] | None = None,
    chosen: Sequence[tuple[str, Variant]] | None = None,
) -> list[tuple[str, Variant]]:
    """(backend, variant) to run on `device`: each backend's variants in `precisions` (or exactly `chosen`),
    the baseline first."""
    if chosen is not None:
        pairs = list(dict.fromkeys(chosen))
    else:
        pairs = [
            (b, v) for b in backends for v in variants(b, device) if precisions is None or v.precision in precisions
        ]
    if BASELINE not in pairs:  # the baseline always runs, first
        pairs.insert(0, BASELINE)
    return pairs


def _time_batch(
    workers: list[WorkerRunner], n: int, size: int, settings: Settings, say: Callable[[str], None]
) -> list[Row]:
    """One batch size: warm every worker up, time them in alternating rounds, compare with eager."""
    rng = np.random.default_rng(settings.seed)
    batch = rng.standard_normal((n, 3, size, size), dtype=np.float32)  # (N, 3, H, W)
    rows: list[Row] = []
    warmed = _warm_up(_restarted(workers, n, rows, say), batch, settings.warmup, rows, say)
    times = _time_rounds(list(warmed), n, settings, rows, say)
    reference = next((warmed[w]["logits"] for w in times if (w.backend, w.variant) == BASELINE), None)
    for worker, blocks in times.items():
        stats = summarize(blocks)
        row = _runner_row(
            worker,
            n,
            latency_ms=stats.to_dict(),
            throughput_ips=throughput(n, stats.mean),
            warmup_s=warmed[worker]["warmup_s"],
        )
        _batch_details(row, warmed[worker])
        if e2e.is_e2e(worker.variant):  # its input is the image files, not the random batch: no rel. diff
            counters = e2e.fetched_counters(worker)
            row.preprocess_share, row.model_ips = e2e.preprocess_share(counters), e2e.model_images_per_s(counters)
        elif reference is not None:
            row.max_rel_diff = _rel_diff(warmed[worker]["logits"], reference)
        rows.append(row)
    return rows


def _batch_details(row: Row, warmed: dict[str, Any]) -> None:
    """What the runner said of this batch size when it prepared it: the file it timed (a fixed-batch format
    has one per batch size) and its notes (a batch run in parts, as alexnet-run runs it)."""
    if warmed.get("artifact"):
        row.artifact, row.artifact_bytes = warmed["artifact"], warmed.get("artifact_bytes")
    row.info.update(warmed.get("info") or {})


def _restarted(workers: list[WorkerRunner], n: int, rows: list[Row], say: Callable[[str], None]) -> list[WorkerRunner]:
    """The workers, with any that died at an earlier batch size started and built again (a row if that fails)."""
    alive = []
    for worker in workers:
        if not worker.alive:
            say(f"{worker.device} batch {n}: restarting {worker.label}")
            try:
                worker.build()
            except Exception as exc:
                rows.append(_not_ok_row(worker, n, exc))
                continue
        alive.append(worker)
    return alive


def _warm_up(
    workers: list[WorkerRunner], batch: np.ndarray, warmup: int, rows: list[Row], say: Callable[[str], None]
) -> dict[WorkerRunner, dict[str, Any]]:
    """Per worker that warmed up, in order: its logits and warm-up seconds; a row for each of the others."""
    warmed = {}
    for worker in workers:
        say(f"{worker.device} batch {len(batch)}: warming up {worker.label}")
        try:
            warmed[worker] = worker.warm(batch, warmup)
        except Exception as exc:  # a runner failing at one batch size must not stop the others
            rows.append(_not_ok_row(worker, len(batch), exc))
    return warmed


def round_order(items: Sequence[Any], round_index: int) -> list[Any]:
    """The order of round `round_index`: forwards, then backwards (ABC, CBA: who ran last runs first, so
    nobody always follows the same neighbour), rotated by one every two rounds (BCA, ACB, ...)."""
    shift = (round_index // 2) % max(len(items), 1)
    order = list(items[shift:]) + list(items[:shift])
    return order[::-1] if round_index % 2 else order


def _time_rounds(
    workers: list[WorkerRunner], n: int, settings: Settings, rows: list[Row], say: Callable[[str], None]
) -> dict[WorkerRunner, list[list[float]]]:
    """Seconds per call, per worker and round, in the workers' order; a worker failing mid-way gets a row instead."""
    times: dict[WorkerRunner, list[list[float]]] = {w: [] for w in workers}
    min_iterations, min_seconds = settings.budget.block()
    for round_index in range(settings.budget.rounds):
        for worker in round_order([w for w in workers if w in times], round_index):
            say(f"{worker.device} batch {n}: round {round_index + 1}/{settings.budget.rounds} {worker.label}")
            time.sleep(PAUSE_S)  # the previous worker's engine threads park; this one is alone on the cores
            try:
                times[worker].append(worker.time_block(min_iterations, min_seconds, settings.clock))
            except Exception as exc:
                rows.append(_not_ok_row(worker, n, exc))
                del times[worker]
    return times


def _rel_diff(out: np.ndarray, ref: np.ndarray) -> float | None:
    if out.shape != ref.shape:
        return None
    scale = float(np.abs(ref).max()) or 1.0
    return float(np.abs(out.astype(np.float64) - ref).max() / scale)


def _add_comparisons(rows: list[Row], cost: roofline.ModelCost, limits: dict[str, Limits]) -> None:
    """Speed-up against eager fp32 on the same device and batch size, and the fraction of the floor."""
    base = {(r.device, r.batch_size): r.latency_ms["p50"] for r in rows if r.status == "ok" and r.is_baseline}
    for row in rows:
        if row.status != "ok" or e2e.OPTION in row.variant.split():  # files in, not a batch: no model comparisons
            continue
        p50 = row.latency_ms["p50"]
        if (row.device, row.batch_size) in base:
            row.speedup = base[(row.device, row.batch_size)] / p50
        lim = limits[row.device]
        bound = roofline.floor(
            cost, row.batch_size, gflops=lim.gflops(row.precision), gbps=lim.bandwidth_gbps, precision=row.precision
        )
        row.floor_ms, row.bound = bound.floor_ms, bound.bound
        row.floor_fraction = roofline.floor_fraction(bound.floor_ms, p50)
        row.floor_note = floor_note(row.floor_fraction, row.bound)
