"""alexnet-batch on real Ray clusters: one started as its own process (`ray start --head`) and joined
by address, and the local one it starts itself. Rows must be alexnet-run's, one per file, and a
killed run must resume with no row missing or doubled."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Ray clusters start in seconds and stop in tens of them: test-all only

from benchmarks.serve_process import free_port  # noqa: E402
from runtime.batch.results import read_rows  # noqa: E402
from runtime.cli import main as alexnet_run  # noqa: E402
from tests.tiny_onnx import TINY_ONNX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = [sys.executable, "-c", "from runtime.batch.cli import main; main(prog_name='alexnet-batch')"]


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray head in a process of its own (`ray start --block`); stopped with it.

    Token authentication on, as Ray 2.59+ turns it on for a local `ray start`: a fresh token in
    RAY_AUTH_TOKEN, which the head and the commands joining it read first (nothing in ~/.ray).
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        env.delenv("RAY_ADDRESS", raising=False)
        yield from _head()


def _head():
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "false", "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start exited"
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGINT)  # `ray start --block` stops its cluster on Ctrl-C
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def write_folder(root: Path, count: int, seed: int = 0) -> Path:
    """`count` images of mixed sizes and formats, plus broken ones: truncated, empty, not an image."""
    rng = np.random.default_rng(seed)
    sizes = [(8, 8), (40, 30), (320, 240), (30, 90)]
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        pixels = rng.integers(0, 256, (h, w, 3), np.uint8)
        sub = root / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(sub / f"{i:04d}.{'png' if i % 4 == 3 else 'jpg'}", quality=90)
    good = (root / "d0" / "0000.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    return root


def batch(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*BATCH, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300, **kwargs)


def _rows_by_path(out: Path) -> dict:
    rows = read_rows(out)
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows), "a path has two rows"
    return by_path


@pytest.mark.timeout(400)
def test_rows_are_alexnet_runs_one_per_file(tmp_path, cluster):
    folder = write_folder(tmp_path / "imgs", 60)
    done = batch([TINY_ONNX, folder, "-o", tmp_path / "out", "--address", cluster, "--quiet"])
    assert done.returncode == 0, done.stderr
    rows = _rows_by_path(tmp_path / "out")
    ran = CliRunner().invoke(alexnet_run, ["-m", str(TINY_ONNX), "--json", str(folder)])
    expected = {os.path.abspath(r["path"]): r for r in map(json.loads, ran.stdout.splitlines())}
    assert set(rows) == set(expected) and len(rows) == 63
    for path, row in rows.items():
        ref = expected[path]
        if "error" in ref:
            assert row["error"] == ref["error"] and row["labels"] is None
            continue
        assert row["error"] is None and row["indices"] == ref["indices"] and row["labels"] == ref["labels"]
        np.testing.assert_allclose(row["probabilities"], ref["probabilities"], rtol=0, atol=1e-6)
    assert sum(row["error"] is not None for row in rows.values()) == 3
    assert {row["model_sha256"] for row in rows.values()} == {
        json.loads((tmp_path / "out/alexnet-batch.json").read_text())["model_sha256"]
    }


@pytest.mark.timeout(400)
def test_a_killed_run_resumes_with_no_row_missing_or_doubled(tmp_path, cluster):
    folder = write_folder(tmp_path / "imgs", 1500, seed=1)
    out = tmp_path / "out"
    args = [TINY_ONNX, folder, "-o", out, "--address", cluster, "--quiet", "--batch-size", "4", "--rows-per-part", "8"]
    driver = subprocess.Popen([*BATCH, *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("part-*.parquet"))):
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read() if driver.poll() else "slow"
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = len(read_rows(out))
    print(f"killed with {written} of 1503 rows written")
    assert 0 < written < 1503, "killed after the run had finished: nothing to resume"
    done = batch([TINY_ONNX, folder, "-o", out, "--address", cluster, "--quiet", "--resume"])
    assert done.returncode == 0, done.stderr
    rows = _rows_by_path(out)
    assert len(rows) == 1503
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temp file was left behind"


@pytest.mark.timeout(400)
def test_jsonl_and_overwrite(tmp_path, cluster):
    folder = write_folder(tmp_path / "imgs", 12)
    out = tmp_path / "out"
    first = batch([TINY_ONNX, folder, "-o", out, "--address", cluster, "--quiet", "--format", "jsonl", "--topk", "2"])
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    assert len(lines) == 15 and all(len(row.get("labels", [1, 2])) == 2 for row in lines)
    assert {tuple(sorted(row)) for row in lines if "error" in row} == {("error", "model_sha256", "path")}
    again = batch([TINY_ONNX, folder, "-o", out, "--address", cluster, "--quiet", "--overwrite"])
    assert again.returncode == 0, again.stderr
    assert not list(out.glob("*.jsonl")) and len(read_rows(out)) == 15


@pytest.mark.timeout(400)
def test_uris_are_read_by_ray_and_named_as_listed(tmp_path, cluster):
    folder = write_folder(tmp_path / "imgs", 6)
    out = tmp_path / "out"
    done = batch([TINY_ONNX, f"file://{folder}", "-o", out, "--address", cluster, "--quiet"])
    assert done.returncode == 0, done.stderr
    rows = _rows_by_path(out)
    assert len(rows) == 9 and all(path.startswith(f"file://{folder}/") for path in rows)
    assert sum(row["error"] is not None for row in rows.values()) == 3


@pytest.mark.timeout(400)
def test_a_local_cluster_by_default(tmp_path):
    folder = write_folder(tmp_path / "imgs", 8)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = batch([TINY_ONNX, folder, "-o", tmp_path / "out"], env=env)
    assert done.returncode == 0, done.stderr
    assert "11 rows written" in done.stderr and "3 could not be predicted" in done.stderr
    assert len(_rows_by_path(tmp_path / "out")) == 11
