"""The parent's side of the worker processes (`benchmarks.worker`), pyperf style.

A `WorkerRunner` stands for one (backend, variant, device): it spawns its worker, has it build
the runner once, and then asks it to warm up and to time blocks. It carries what rows need
(artifact, size, build time, info) like an in-process runner did. A worker that raises gives
`WorkerError` (and lives on); one that dies (a signal, an exit) or does not answer in time is
killed and gives `WorkerDied`, whose message is the row's reason. Nothing here waits forever.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any

from benchmarks.artifacts import Skip
from benchmarks.variant import Variant
from benchmarks.worker import WorkerSpec, call_and_send, class_name, serve

QUIT_WAIT_S = 5.0  # a worker asked to quit gets this long to close its engine, then it is killed


class WorkerError(Exception):
    """The worker's runner raised; the message is the error's first line. The worker is still alive."""


class WorkerDied(Exception):
    """The worker crashed, exited or hung (and was killed); the message says which, in one line."""


def exit_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words: "killed by SIGKILL", "exited with code 3"."""
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class WorkerRunner:
    """One runner in its own process, with the attributes `suite` makes rows from."""

    def __init__(
        self,
        runner_class: type,
        device: str,
        variant: Variant,
        threads: int | None = None,
        artifacts: Any = None,
        timeouts: tuple[float, float] = (600.0, 1800.0),
        batch_sizes: Sequence[int] = (),
    ) -> None:
        """`artifacts`: the parent's `benchmarks.artifacts.Artifacts` (None: a runner needing no model, in tests);
        `timeouts`: seconds for one command, and for the build (exports, torch.compile, NNCF take long);
        `batch_sizes`: those it will be timed at (a fixed-batch format is exported once for each)."""
        self.runner_class, self.backend = runner_class, runner_class.backend
        self.batch_sizes = tuple(batch_sizes)
        self.device, self.variant, self.threads, self.artifacts = device, variant, threads, artifacts
        self.timeout_s, self.build_timeout_s = timeouts
        self.artifact: str | None = None
        self.artifact_bytes: int | None = None
        self.build_s: float | None = None
        self.info: dict[str, Any] = {}
        self.process: Any = None
        self.conn: Any = None

    @property
    def precision(self) -> str:
        return self.variant.precision

    @property
    def label(self) -> str:
        return f"{self.backend} {self.variant.label}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def start(self) -> None:
        """Spawn the worker (a fresh interpreter: no engine state, no thread pool inherited)."""
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, self._spec()), name=f"bench {self.label}")
        self.process.start()
        child.close()  # the worker holds the only other end: its death reads as EOF here

    def _spec(self) -> WorkerSpec:
        artifacts = self.artifacts
        return WorkerSpec(
            class_name(self.runner_class),
            self.device,
            self.variant,
            self.threads,
            source=artifacts.worker_source() if artifacts is not None else None,
            workdir=str(artifacts.workdir) if artifacts is not None else None,
            cache=artifacts.export_cache() if artifacts is not None else {},  # the exports made so far
        )

    def build(self) -> None:
        """Export what the runner loads (here, once: the next workers reuse it), start the worker and build
        its runner; a worker that cannot build is closed before this raises."""
        self._export_first()
        self.start()
        try:
            built = self.call(("build",), self.build_timeout_s)
        except BaseException:
            self._adopt_exports()
            self.close()
            raise
        self.artifact, self.artifact_bytes = built["artifact"], built["artifact_bytes"]
        self.build_s, self.info = built["build_s"], built["info"]
        self._adopt_exports()

    def _export_first(self) -> None:
        if self.artifacts is None:
            return
        for fmt, precision in self.runner_class.exports(self.variant, self.device):
            for batch in self.batch_sizes or (None,):  # one file for all, but a fixed-batch format's per batch
                with contextlib.suppress(Skip):  # kept in the cache: the worker raises it after its own checks
                    self.artifacts.get(fmt, precision, batch)

    def _adopt_exports(self) -> None:
        """The exports the worker made (or found impossible) become the parent's: the next worker reuses them."""
        if self.artifacts is None or not self.alive:
            return
        with contextlib.suppress(WorkerError, WorkerDied, Skip):
            self.artifacts.adopt(self.call(("cache",), self.timeout_s))

    def warm(self, batch: Any, warmup: int) -> dict[str, Any]:
        return self.call(("warm", batch, warmup), self.timeout_s)

    def time_block(self, min_iterations: int, min_seconds: float, clock: str) -> list[float]:
        return self.call(("time", min_iterations, min_seconds, clock), self.timeout_s + min_seconds)

    def counters(self) -> dict[str, Any]:
        return self.call(("counters",), self.timeout_s)

    def call(self, message: tuple, timeout_s: float) -> Any:
        """Send one command and wait for its answer, at most `timeout_s` seconds, watching the process too."""
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._died() from None
        ready = wait([self.conn, self.process.sentinel], timeout_s)
        if not ready:
            self.kill()
            raise WorkerDied(f"worker gave no answer within {timeout_s:g} s (timed out, killed)")
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if status == "skip":
            raise Skip(payload)
        if status == "error":
            raise WorkerError(payload)
        return payload

    def _died(self) -> WorkerDied:
        self.process.join(QUIT_WAIT_S)  # it has closed its pipe: reap it, to read its exit code
        reason = exit_reason(self.process.exitcode)
        self.kill()
        return WorkerDied(f"worker {reason}")

    def close(self) -> None:
        """Ask the worker to quit (its runner closes its engine); kill it if it does not within QUIT_WAIT_S."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.conn.send(("quit",))
            self.process.join(QUIT_WAIT_S)
        self.kill()

    def kill(self) -> None:
        """Kill and reap the worker (a no-op once it has gone): no orphan outlives the run."""
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join()
            self.process.close()
            self.process = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@contextlib.contextmanager
def running(workers: Sequence[WorkerRunner]) -> Iterator[Sequence[WorkerRunner]]:
    """Workers closed on the way out; killed at once on an error or Ctrl-C (KeyboardInterrupt)."""
    try:
        yield workers
    except BaseException:
        for worker in workers:
            worker.kill()
        raise
    finally:
        for worker in workers:
            worker.close()


def run_isolated(function: str, args: tuple, timeout_s: float) -> Any:
    """`function` ("module:name") called with `args` in a spawned process; its result, or None if it raised,
    died or ran past `timeout_s` (the process is killed and reaped either way)."""
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    process = context.Process(target=call_and_send, args=(child, function, args), name=f"bench {function}")
    process.start()
    child.close()
    try:
        if wait([conn, process.sentinel], timeout_s) and conn.poll():
            status, payload = conn.recv()
            return payload if status == "ok" else None
        return None
    except (EOFError, OSError):
        return None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        process.close()
        conn.close()
