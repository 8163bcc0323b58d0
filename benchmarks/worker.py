"""The worker process: one runner, alone in its own process, timed on command.

Engines disturb each other when they share a process: onnxruntime's and OpenVINO's thread
pools keep spinning after a call and take the cores from whichever engine runs next. So each
(backend, variant, device) lives in a process of its own (spawned, never forked, so no engine
state is inherited), built once and then driven over a pipe by `benchmarks.isolation`:

    ("build",)                       -> build the runner: its artifact, size, build time, info
    ("cache",)                       -> the exports made so far, for the next workers to reuse
    ("warm", batch, warmup)          -> prepare the batch, run `warmup` untimed calls: logits, seconds,
                                        the file timed and the row's notes for this batch size
    ("time", iterations, seconds, clock) -> one timed block: seconds per call
    ("counters",)                    -> what the runner counted over the blocks since the warm-up
    ("quit",)                        -> close the runner and exit

Every reply is (status, payload): "ok", "skip" (the runner cannot run here: the reason) or
"error" (it raised: the first line of the message). Between commands the worker blocks on its
pipe, so its engine's threads are parked while another worker is being timed.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.variant import Variant

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds: everything is picklable, and the runner class travels by name so a
    worker can import it (tests pass their own runners this way)."""

    runner: str  # "module:QualName" of a benchmarks.runner_base.Runner subclass
    device: str
    variant: Variant
    threads: int | None = None
    source: dict[str, Any] | None = None  # benchmarks.artifacts.source_spec(); None: no model (tests)
    workdir: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # Artifacts.export_cache() of the parent


def class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve(name: str) -> type:
    """The class a WorkerSpec names; it must be importable by name (module level)."""
    module, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import runner {name} in the worker (define it at module level): {exc}") from exc
    return obj


def serve(conn: Any, spec: WorkerSpec) -> None:
    """The worker's entry point (the target of a spawned process): answer commands until "quit" or EOF."""
    # Ctrl-C reaches the whole process group: the parent alone decides when workers stop, and kills them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_threads(spec.threads, torch_too=spec.source is not None)
    state: dict[str, Any] = {"spec": spec, "runner": None, "artifacts": None}
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone: nobody to answer
                return
            if message[0] == "quit":
                return
            conn.send(_answer(state, message))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent went away mid-answer
    finally:
        if state["runner"] is not None:
            state["runner"].close()


def call_and_send(conn: Any, function: str, args: tuple) -> None:
    """Entry point of a one-off measurement process (`benchmarks.isolation.run_isolated`): call, send, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `serve`: the parent decides
    from runtime.errors import first_line

    try:
        conn.send(("ok", resolve(function)(*args)))
    except Exception as exc:
        conn.send(("error", first_line(exc)))


def _set_threads(threads: int | None, torch_too: bool) -> None:
    """Intra-op threads for this process: a process-wide setting, which only this entry point may change."""
    if not threads:
        return
    for name in THREAD_VARIABLES:  # read by OpenMP/BLAS when they start, before any engine is imported
        os.environ[name] = str(threads)
    if torch_too or "torch" in sys.modules:  # a model to load means torch (the checkpoint is a torch file)
        import torch

        torch.set_num_threads(threads)


def _answer(state: dict[str, Any], message: tuple) -> tuple[str, Any]:
    from benchmarks.artifacts import Skip
    from runtime.errors import first_line

    command, args = message[0], message[1:]
    try:
        return "ok", COMMANDS[command](state, *args)
    except Skip as exc:
        return "skip", str(exc)
    except Exception as exc:  # one line back to the parent, which makes the row; the worker lives on
        return "error", first_line(exc)


def _build(state: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.artifacts import reopen_artifacts

    spec: WorkerSpec = state["spec"]
    state["artifacts"] = reopen_artifacts(spec.source, spec.workdir, spec.cache)
    runner = resolve(spec.runner)(state["artifacts"], spec.device, spec.variant, spec.threads)
    state["runner"] = runner
    runner.build()
    return {
        "artifact": runner.artifact,
        "artifact_bytes": runner.artifact_bytes,
        "build_s": runner.build_s,
        "info": dict(runner.info),
    }


def _cache(state: dict[str, Any]) -> dict[str, Any]:
    artifacts = state["artifacts"]
    return artifacts.export_cache() if artifacts is not None else {}


def _warm(state: dict[str, Any], batch: Any, warmup: int) -> dict[str, Any]:
    """Prepare `batch`, then untimed calls: compile, allocate, autotune. The logits go back for the check."""
    runner = state["runner"]
    t0 = time.perf_counter()
    runner.prepare(batch)
    for _ in range(max(warmup, 1)):  # at least one call
        runner.step()
    runner.sync()
    runner.end_block()
    runner.reset_counters()  # the timed blocks that follow are what the counters describe
    return {
        "logits": runner.logits(),
        "warmup_s": time.perf_counter() - t0,
        # this batch size's file (a fixed-batch format has one per batch) and notes, for its row
        "artifact": runner.artifact,
        "artifact_bytes": runner.artifact_bytes,
        "info": runner.batch_info(),
    }


def _time(state: dict[str, Any], min_iterations: int, min_seconds: float, clock: str) -> list[float]:
    from benchmarks.timing import CLOCKS, time_block

    runner = state["runner"]
    runner.sync()  # nothing earlier is counted
    runner.start_block()
    try:
        return time_block(
            runner.step, runner.sync, min_iterations=min_iterations, min_seconds=min_seconds, clock=CLOCKS[clock]
        )
    finally:
        runner.end_block()


def _counters(state: dict[str, Any]) -> dict[str, Any]:
    return state["runner"].counters()


COMMANDS = {"build": _build, "cache": _cache, "warm": _warm, "time": _time, "counters": _counters}
