"""The Ray side of alexnet-batch: the cluster, the actor pool, and the stream of result rows.

Each actor opens the artifact once (runtime.load, any format the runtime opens) and predicts the
bytes Ray read, with alexnet-run's decoding and Predictor, so its rows are alexnet-run's. On a
machine of C cores, A actors of T backend threads each, A x T = C: one actor per core by default,
since a single-threaded actor decodes then runs its batch while the others do the same (measured
on 2 cores, once started: 2 actors x 1 thread 107 images/s, 1 actor x 2 threads 83;
benchmarks/results/batch.md).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runtime.errors import DeployError, first_line

ADDRESS_ENV = "RAY_ADDRESS"
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before saying there is none
DEFAULT_RAY_PORT = 6379
# A read task copies file bytes: it asks for a sliver of a CPU that each actor leaves free (an actor of
# T threads asks for T - READ_CPUS), so there is one read in flight per actor. Ray's default of one
# CPU per read would wait for a CPU the actors never free; zero would start a process per file.
READ_CPUS = 0.01
PART_ROWS = 10_000  # rows per part file at most ...
PART_SECONDS = 5.0  # ... and a part at least this often: a killed driver loses no more


class ClusterError(DeployError):
    """No Ray cluster at the address, or Ray failed to start or run the job."""


@dataclass(frozen=True)
class ActorPlan:
    actors: int
    threads: int  # backend threads per actor

    def describe(self) -> str:
        return f"{self.actors} actor(s) x {self.threads} thread(s)"


def plan_actors(cpus: int, actors: int | None = None, threads: int | None = None) -> ActorPlan:
    """actors x threads = cpus, from what is given: both free -> one actor per CPU."""
    cpus = max(1, cpus)
    if threads is None:
        threads = max(1, cpus // actors) if actors else 1
    if actors is None:
        actors = max(1, cpus // threads)
    return ActorPlan(actors, threads)


def check_address(address: str) -> None:
    """ClusterError unless something accepts connections at a host:port (or ray://host:port) address.

    ray.init on an address with no cluster retries for minutes; this says so in CONNECT_TIMEOUT.
    """
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, str(DEFAULT_RAY_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--address {address!r}: not HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"no Ray cluster at {address} ({reason}); start one with `ray start --head`") from None


def connect(address: str | None, cpus: int, quiet: bool) -> Any:
    """ray, initialized: joined to the cluster at `address`, else a local one of `cpus` CPUs."""
    import logging

    import ray

    if address:
        check_address(address)
    options: dict[str, Any] = {"logging_level": logging.ERROR if quiet else logging.INFO}
    if not address:  # "local": a new instance, even beside a cluster started with `ray start`
        options |= {"address": "local", "num_cpus": cpus, "include_dashboard": False}
    else:
        options["address"] = address
    try:
        ray.init(log_to_driver=not quiet, **options)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's, in one line
        where = f" at {address}" if address else ""
        raise ClusterError(f"Ray did not start{where}: {first_line(exc)}{_auth_hint(address)}") from None
    return ray


def _auth_hint(address: str | None) -> str:
    """What a refused join usually lacks: Ray 2.59+ clusters from `ray start` ask for a token, and a
    driver joining by address sends one only when told to."""
    if not address or os.environ.get("RAY_AUTH_MODE") == "token":
        return ""
    return "; a cluster with token authentication (`ray start` in Ray 2.59+) needs RAY_AUTH_MODE=token and its token"


def cluster_cpus(ray: Any) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


@dataclass(frozen=True)
class JobSpec:
    """What every actor needs (the files go to Ray's reader, not to the actors)."""

    model: str
    plan: ActorPlan
    batch_size: int
    topk: int
    decode: str
    model_sha256: str
    scheme: str | None
    verify: bool = True  # each actor checks its own copy of the weights (another node, another copy)


class BatchPredictor:
    """Ray Data's callable class: one per actor, holding the model, predicting batches of file bytes."""

    def __init__(self, job: JobSpec) -> None:
        import runtime

        self.job = job
        # workers=0: the actor decodes on its own thread; the other actors keep the other cores busy
        self.predictor = runtime.load(
            job.model, threads=job.plan.threads, workers=0, decode=job.decode, verify=job.verify
        )

    def __call__(self, batch: dict[str, Any]) -> Any:
        """{"bytes": (N,) object, "path": (N,) str} -> a table of N result rows (results.schema)."""
        from runtime.batch.results import rows_table
        from runtime.decode import EncodedImage

        scheme = self.job.scheme
        items = [
            EncodedImage(bytes(data), row_name(str(path), scheme)) for data, path in zip(batch["bytes"], batch["path"])
        ]
        return rows_table(self.predictor.predict(items, self.job.topk, workers=0), self.job.model_sha256)


def row_name(ray_path: str, scheme: str | None) -> str:
    """The name the driver listed: Ray drops the scheme from the paths it reports (s3://b/k is b/k)."""
    return f"{scheme}://{ray_path}" if scheme and "://" not in ray_path else ray_path


def result_tables(ray: Any, spec: JobSpec, files: list[str], quiet: bool) -> Iterator[Any]:
    """The rows of `files`, a table per block as the actors finish them (in no set order)."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    dataset = ray.data.read_binary_files(
        files, include_paths=True, ignore_missing_paths=True, num_cpus=READ_CPUS, concurrency=spec.plan.actors
    )
    predicted = dataset.map_batches(
        BatchPredictor,
        fn_constructor_kwargs={"job": spec},
        compute=ray.data.ActorPoolStrategy(size=spec.plan.actors),
        num_cpus=spec.plan.threads - READ_CPUS,
        batch_size=spec.batch_size,
        batch_format="numpy",
    )
    yield from predicted.iter_batches(batch_size=None, batch_format="pyarrow")


class Flusher:
    """Groups result tables into parts: one every `seconds` or `rows`, whichever comes first."""

    def __init__(self, write: Any, seconds: float = PART_SECONDS, rows: int = PART_ROWS) -> None:
        self.write, self.seconds, self.rows = write, seconds, rows
        self.pending: list[Any] = []
        self.count = 0
        self.written = 0
        self.errors = 0  # rows with an error, among those written
        self.last = time.monotonic()

    def add(self, table: Any) -> None:
        from runtime.batch.results import conform

        table = conform(table)
        self.pending.append(table)
        self.count += table.num_rows
        if self.count >= self.rows or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            import pyarrow as pa

            table = pa.concat_tables(self.pending)
            for start in range(0, table.num_rows, self.rows):  # a block may overshoot `rows`: split it
                part = table.slice(start, self.rows)
                self.write(part)
                self.written += part.num_rows
                self.errors += part.num_rows - part.column("error").null_count
        self.pending, self.count, self.last = [], 0, time.monotonic()
