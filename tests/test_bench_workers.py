"""Worker processes (benchmarks.worker, benchmarks.isolation): a runner that raises, dies by a
signal, exits or hangs gives a failed row with the reason, the run finishes, and no worker
outlives it. Fake runners (tests/bench_fakes.py) load no model, so each worker starts fast.
Nothing here asserts a timing."""

from __future__ import annotations

import os

import numpy as np
import pytest
from bench_fakes import (
    BaselineRunner,
    ExitingRunner,
    FakeRunner,
    HangingRunner,
    KilledRunner,
    NoModel,
    RaisingRunner,
    SkippingRunner,
)

from benchmarks import roofline, runners, suite
from benchmarks.artifacts import Skip
from benchmarks.isolation import WorkerDied, WorkerError, WorkerRunner, exit_reason, running
from benchmarks.machine import Limits
from benchmarks.timing import Budget
from benchmarks.variant import FP32

BATCH = np.zeros((2, 3, 8, 8), np.float32)
SHORT = (3.0, 60.0)  # seconds: a command, a build (a spawned worker imports numpy and benchmarks)


def worker(runner_class, timeouts=SHORT):
    return WorkerRunner(runner_class, "cpu", FP32, threads=1, timeouts=timeouts)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_worker_builds_warms_and_times_in_its_own_process():
    w = worker(FakeRunner)
    with running([w]):
        w.build()
        pid = w.info["pid"]
        assert pid != os.getpid()
        warmed = w.warm(BATCH, 2)
        assert warmed["logits"].shape == (2, 10) and warmed["warmup_s"] >= 0
        assert len(w.time_block(3, 0.0, "wall")) == 3
        assert len(w.time_block(2, 0.0, "cpu")) == 2
    assert w.process is None and gone(pid)  # quit and reaped


def test_a_worker_that_raises_answers_the_first_line_and_lives_on():
    w = worker(RaisingRunner)
    with running([w]):
        w.build()
        with pytest.raises(WorkerError, match="^kernel exploded$"):
            w.warm(BATCH, 1)
        assert w.alive


def test_a_worker_killed_by_a_signal_is_reported_and_reaped():
    w = worker(KilledRunner)
    with running([w]):
        w.build()
        with pytest.raises(WorkerDied, match="killed by SIGKILL"):
            w.warm(BATCH, 1)
        assert not w.alive and w.process is None


def test_a_hanging_worker_times_out_and_is_killed():
    w = worker(HangingRunner, timeouts=(1.0, 60.0))
    with running([w]):
        w.build()
        pid = w.info["pid"]
        with pytest.raises(WorkerDied, match="timed out"):
            w.warm(BATCH, 1)
    assert gone(pid)


@pytest.mark.parametrize(
    "runner_class, error, message",
    [(ExitingRunner, WorkerDied, "exited with code 3"), (SkippingRunner, Skip, "no such engine here")],
)
def test_a_build_that_exits_or_skips_says_why(runner_class, error, message):
    w = worker(runner_class)
    with pytest.raises(error, match=message):
        w.build()
    assert w.process is None  # closed by build itself


def test_a_runner_class_that_cannot_be_imported_is_an_error():
    class Nowhere(FakeRunner):  # local: the worker cannot import it by name
        pass

    w = worker(Nowhere)
    with pytest.raises(WorkerError, match="Nowhere"):
        w.build()
    assert w.process is None


def test_ctrl_c_kills_every_worker():
    workers = [worker(FakeRunner), worker(HangingRunner, timeouts=(60.0, 60.0))]
    with pytest.raises(KeyboardInterrupt), running(workers):
        for w in workers:
            w.build()
        pids = [w.info["pid"] for w in workers]
        raise KeyboardInterrupt
    assert all(w.process is None for w in workers) and all(gone(p) for p in pids)


def test_exit_reasons_name_the_signal_or_code():
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(-11) == "killed by SIGSEGV"
    assert exit_reason(3) == "exited with code 3"


def test_rounds_rotate_and_alternate():
    orders = ["".join(suite.round_order("abc", r)) for r in range(4)]
    assert orders == ["abc", "cba", "bca", "acb"]
    assert {o[0] for o in orders[:3]} == set("abc")  # nobody always first
    assert suite.round_order([], 1) == []


def test_the_run_finishes_with_a_row_per_failure(monkeypatch):
    for name, cls in [("pytorch", BaselineRunner), ("raising", RaisingRunner), ("killed", KilledRunner)]:
        monkeypatch.setitem(runners.RUNNERS, name, cls)
    monkeypatch.setitem(runners.RUNNERS, "hanging", HangingRunner)
    monkeypatch.setattr(suite, "measure_limits", lambda *a, **k: Limits("cpu", {"fp32": 100.0}, 10.0))
    settings = suite.Settings(
        ["raising", "killed", "hanging"],
        ["cpu"],
        [1, 2],
        Budget(iterations=2, rounds=2),
        warmup=1,
        threads=1,
        timeout_s=1.0,
        build_timeout_s=60.0,
    )
    cost = roofline.ModelCost("fake", 10, 8, parameters=1000, flops=10**6)
    result = suite.run_suite(NoModel(), cost, settings)
    rows = {(r.backend, r.batch_size): r for r in result.rows}
    for n in (1, 2):  # a worker that died at batch 1 is started again for batch 2
        assert rows[("pytorch", n)].status == "ok" and rows[("pytorch", n)].latency_ms["n"] == 2
        assert rows[("pytorch", n)].max_rel_diff == 0.0
        assert rows[("raising", n)].status == "failed" and rows[("raising", n)].reason == "kernel exploded"
        assert rows[("killed", n)].status == "failed" and "SIGKILL" in rows[("killed", n)].reason
        assert rows[("hanging", n)].status == "failed" and "timed out" in rows[("hanging", n)].reason
