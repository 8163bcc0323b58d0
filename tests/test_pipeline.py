"""Parallel decoding (issue 29): input order kept, errors per file, bounded look-ahead, worker counts."""

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import TINY_ONNX

import runtime
from runtime.pipeline import default_workers, ordered_map
from runtime.predictor import InputError

pytestmark = pytest.mark.runtime


def test_results_come_in_input_order_whatever_order_they_finish_in():
    def slow_for_small(n):
        time.sleep(0.002 * (10 - n % 10))  # early items finish last
        return n * n

    for workers in (0, 1, 3, 8):
        assert list(ordered_map(slow_for_small, range(30), workers=workers, ahead=5)) == [n * n for n in range(30)]


def test_no_more_than_ahead_items_are_started_before_the_caller_takes_them():
    started, lock = [], threading.Lock()

    def record(n):
        with lock:
            started.append(n)
        return n

    results = ordered_map(record, range(100), workers=4, ahead=6)
    taken = [next(results) for _ in range(3)]
    time.sleep(0.05)  # give the workers every chance to run ahead
    assert taken == [0, 1, 2] and len(started) <= 3 + 6
    results.close()  # stopping early cancels the rest
    assert len(started) < 100


def test_an_error_is_raised_at_its_items_turn():
    def fail_on_three(n):
        if n == 3:
            raise ValueError("three")
        return n

    got = []
    with pytest.raises(ValueError, match="three"):
        for value in ordered_map(fail_on_three, range(10), workers=2, ahead=4):
            got.append(value)
    assert got == [0, 1, 2]


def test_bad_arguments_and_the_default():
    with pytest.raises(ValueError):
        list(ordered_map(str, [1], workers=-1, ahead=1))
    assert 1 <= default_workers() <= 8


def images(tmp_path, count=12, broken=(4, 9)):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(count):
        path = tmp_path / f"img{i:02d}.jpg"
        if i in broken:
            path.write_bytes(b"not a jpeg")
        else:
            size = (int(rng.integers(40, 700)), int(rng.integers(40, 500)))
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_every_worker_count_gives_the_same_rows_in_the_same_order(tmp_path, batch_size):
    paths = images(tmp_path)
    rows = {}
    for workers in (0, 1, 2, 5):
        with runtime.load(TINY_ONNX, workers=workers) as predictor:
            assert predictor.workers == workers
            rows[workers] = [p.to_dict() for p in predictor.predict(paths, batch_size=batch_size)]
    assert rows[0] == rows[1] == rows[2] == rows[5]
    assert [r["path"] for r in rows[0]] == paths
    assert [i for i, r in enumerate(rows[0]) if "error" in r] == [4, 9]  # only the broken files fail
    assert "img04.jpg: " in rows[0][4]["error"]


def test_workers_must_be_a_count():
    with runtime.load(TINY_ONNX) as predictor:
        assert predictor.workers == default_workers()
        for bad in (-1, 1.5, True):
            with pytest.raises(InputError, match="workers must be"):
                predictor.predict([], workers=bad)


def test_exact_decode_reaches_the_predictor():
    for decode in ("reduced", "exact"):
        with runtime.load(TINY_ONNX, decode=decode) as predictor:
            assert predictor.metadata.preprocess.decode == decode


def run_cli(*args):
    from runtime.cli import main

    return CliRunner().invoke(main, ["-m", str(TINY_ONNX), *args], catch_exceptions=False)


def test_alexnet_run_workers_and_exact_decode(tmp_path):
    (tmp_path / "in").mkdir()
    paths = images(tmp_path / "in")
    outputs = {}
    for args in (["--workers", "0"], ["--workers", "3"], ["--exact-decode", "--workers", "2"]):
        result = run_cli("--json", *args, str(tmp_path / "in"))
        assert result.exit_code == 1  # two broken files
        outputs[args[-1]] = [json.loads(line) for line in result.stdout.splitlines()]
    assert outputs["0"] == outputs["3"]
    assert [r["path"] for r in outputs["2"]] == paths
    bad = run_cli("--workers", "-1", paths[0])
    assert bad.exit_code == 2 and "--workers" in bad.output


def test_ctrl_c_keeps_the_rows_printed_so_far_and_exits_130(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    images(tmp_path / "in", count=8, broken=())
    from runtime.predictor import Predictor

    real = Predictor.iter_predict

    def interrupted_after_three(self, *args, **kwargs):
        for n, prediction in enumerate(real(self, *args, **kwargs)):
            if n == 3:
                raise KeyboardInterrupt
            yield prediction

    monkeypatch.setattr(Predictor, "iter_predict", interrupted_after_three)
    result = run_cli("--json", "--batch-size", "2", str(tmp_path / "in"))
    assert result.exit_code == 130
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["img00.jpg", "img01.jpg", "img02.jpg"]
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    assert not any(t.name.startswith("alexnet-decode") for t in threading.enumerate())  # the decoders stopped
