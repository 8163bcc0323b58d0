"""Run the benchmark: every backend x device x batch size, interleaved, beside the floor.

Per device: measure the machine's limits, build every runner once, then per batch size
warm each one up and time them in rounds, each round visiting the runners in a rotated
order. Every row keeps its round medians, so a machine that got busier halfway shows as a
wide spread on all rows instead of a hidden bias on some.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import roofline
from benchmarks.artifacts import Artifacts, Skip
from benchmarks.machine import Limits, best_limits, measure_limits
from benchmarks.runners import RUNNERS, Runner, torch_device
from benchmarks.timing import CLOCKS, SPREAD_WARNING, Budget, summarize, throughput, time_block
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
    precisions: Sequence[str] | None = None  # of variant.PRECISIONS; None: every variant of each backend


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
    bound: str | None = None  # what sets the floor: compute | memory
    max_rel_diff: float | None = None  # max |logits - eager logits| / max |eager logits|
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


def _runner_row(runner: Runner, batch_size: int | None, **values: Any) -> Row:
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
    for device in settings.devices:
        pairs = runner_pairs(settings.backends, device, settings.precisions)
        runners = [RUNNERS[b](artifacts, device, v, settings.threads) for b, v in pairs]
        try:
            torch_device(device)
        except Skip as exc:
            rows += [_not_ok_row(r, None, exc) for r in runners]
            continue
        precisions = tuple(dict.fromkeys(r.precision for r in runners))
        say(f"{device}: measuring matmul rate and memory bandwidth")
        measure = functools.partial(
            measure_limits, device, precisions, clock=CLOCKS[settings.clock], **settings.measure
        )
        measured = [measure()]
        ready, unready = _build(runners, say)
        rows += unready
        try:
            for n in settings.batch_sizes:
                rows += _time_batch(ready, n, artifacts.source.image_size, settings, say)
                if settings.remeasure:  # on a shared machine the quietest moment gives the truest peak
                    say(f"{device}: measuring matmul rate and memory bandwidth again")
                    measured.append(measure())
        finally:
            for runner in ready:
                runner.close()
        limits[device] = best_limits(measured)
        floors[device] = [
            roofline.floor(cost, n, gflops=limits[device].gflops(p), gbps=limits[device].bandwidth_gbps, precision=p)
            for p in precisions
            for n in settings.batch_sizes
        ]
    _add_comparisons(rows, cost, limits)
    return Result(rows, limits, floors, _warnings(rows))


def _not_ok_row(runner: Runner, batch_size: int | None, exc: Exception) -> Row:
    """Skip: "skipped" (cannot run here); anything else: "failed" (broke), in one line either way."""
    if isinstance(exc, Skip):
        return _runner_row(runner, batch_size, status="skipped", reason=str(exc))
    return _runner_row(runner, batch_size, status="failed", reason=first_line(exc))


def _build(runners: list[Runner], say: Callable[[str], None]) -> tuple[list[Runner], list[Row]]:
    """Build each runner once: (the runners ready, a row for each of the others)."""
    ready, rows = [], []
    for runner in runners:
        say(f"{runner.device}: building {runner.label}")
        try:
            runner.build()
            ready.append(runner)
        except Exception as exc:  # a broken backend must not stop the others
            rows.append(_not_ok_row(runner, None, exc))
    return ready, rows


def runner_pairs(
    backends: Sequence[str], device: str, precisions: Sequence[str] | None = None
) -> list[tuple[str, Variant]]:
    """(backend, variant) to run on `device`: each backend's variants in `precisions`, the baseline first."""
    pairs = [(b, v) for b in backends for v in variants(b, device) if precisions is None or v.precision in precisions]
    if BASELINE not in pairs:  # the baseline always runs, first
        pairs.insert(0, BASELINE)
    return pairs


def _time_batch(runners: list[Runner], n: int, size: int, settings: Settings, say: Callable[[str], None]) -> list[Row]:
    """One batch size: warm every runner up, time them in interleaved rounds, compare with eager."""
    rng = np.random.default_rng(settings.seed)
    batch = rng.standard_normal((n, 3, size, size), dtype=np.float32)  # (N, 3, H, W)
    outputs, warm_s, rows = _warm_up(runners, batch, settings.warmup, say)
    active = list(outputs)
    times = _time_rounds(active, n, settings, say)
    reference = next((outputs[r] for r in active if (r.backend, r.variant) == BASELINE), None)
    for runner in active:
        stats = summarize(times[runner])
        row = _runner_row(
            runner, n, latency_ms=stats.to_dict(), throughput_ips=throughput(n, stats.mean), warmup_s=warm_s[runner]
        )
        if reference is not None:
            row.max_rel_diff = _rel_diff(outputs[runner], reference)
        rows.append(row)
    return rows


def _warm_up(
    runners: list[Runner], batch: np.ndarray, warmup: int, say: Callable[[str], None]
) -> tuple[dict[Runner, np.ndarray], dict[Runner, float], list[Row]]:
    """(logits per runner that warmed up, in order; its warm-up seconds; a row for each that did not)."""
    outputs, warm_s, rows = {}, {}, []
    for runner in runners:
        say(f"{runner.device} batch {len(batch)}: warming up {runner.label}")
        try:
            t0 = time.perf_counter()
            runner.prepare(batch)
            for _ in range(max(warmup, 1)):  # at least one call: compile, allocate, autotune
                runner.step()
            runner.sync()
            seconds = time.perf_counter() - t0
            outputs[runner], warm_s[runner] = runner.logits(), seconds
        except Exception as exc:  # a runner failing at one batch size must not stop the others
            rows.append(_not_ok_row(runner, len(batch), exc))
    return outputs, warm_s, rows


def _time_rounds(
    runners: list[Runner], n: int, settings: Settings, say: Callable[[str], None]
) -> dict[Runner, list[list[float]]]:
    """Seconds per call, per runner and round; each round visits every runner, in a rotated order."""
    times: dict[Runner, list[list[float]]] = {r: [] for r in runners}
    min_iterations, min_seconds = settings.budget.block()
    for round_index in range(settings.budget.rounds):
        shift = round_index % max(len(runners), 1)
        for runner in runners[shift:] + runners[:shift]:  # rotate: nobody always runs first or last
            say(f"{runner.device} batch {n}: round {round_index + 1}/{settings.budget.rounds} {runner.label}")
            time.sleep(PAUSE_S)
            runner.sync()
            times[runner].append(
                time_block(
                    runner.step,
                    runner.sync,
                    min_iterations=min_iterations,
                    min_seconds=min_seconds,
                    clock=CLOCKS[settings.clock],
                )
            )
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
        if row.status != "ok":
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


def _warnings(rows: list[Row]) -> list[str]:
    return _noise_warnings(rows) + _int8_warnings(rows)


def _noise_warnings(rows: list[Row]) -> list[str]:
    noisy = [r for r in rows if r.status == "ok" and r.latency_ms["spread"] > SPREAD_WARNING]
    if not noisy:
        return []
    worst = max(noisy, key=lambda r: r.latency_ms["spread"])
    return [
        f"{len(noisy)} of {sum(r.status == 'ok' for r in rows)} rows have round medians more than "
        f"{SPREAD_WARNING:.0%} apart (worst: {worst.label} on {worst.device} at batch {worst.batch_size}, "
        f"{worst.latency_ms['spread']:.0%}); the machine is busy or throttling: compare with care, "
        f"or rerun with more --repeats / --min-time on a quiet machine"
    ]


def _int8_warnings(rows: list[Row]) -> list[str]:
    """An int8 artifact that is not all int8 (export kept layers in fp32 to pass its gate) times something else."""
    records = {r.artifact: r.info.get("quantization") for r in rows if r.precision == "int8" and r.status == "ok"}
    warnings = []
    for artifact, record in records.items():
        gate, kept = (record or {}).get("gate") or {}, (record or {}).get("fp32_layers") or []
        if kept or gate.get("passed") is False:
            verdict = "failed (written because the benchmark forces it)" if gate.get("passed") is False else "passed"
            warnings.append(
                f"int8 artifact {artifact}: export's accuracy gate {verdict}, step {gate.get('step')!r}, "
                f"{len(kept)} layer(s) kept in fp32 ({', '.join(kept) or 'none'}): its rows are not all-int8"
            )
    return warnings
