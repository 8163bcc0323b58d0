"""alexnet-batch without a cluster: listing inputs, the results folder, the actor plan, and every
bad input refused (one line, exit 1 or 2) before Ray starts or anything of an earlier output changes."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("pyarrow")

from runtime.batch import inputs, job  # noqa: E402
from runtime.batch.cli import main  # noqa: E402
from runtime.batch.inputs import InputListError, list_inputs  # noqa: E402
from runtime.batch.job import ClusterError, check_address, plan_actors, row_name  # noqa: E402
from runtime.batch.results import MANIFEST, ResultsError, ResultsFolder, error_table, read_rows  # noqa: E402
from tests.tiny_onnx import TINY_ONNX  # noqa: E402


def _image(path, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(path)
    return path


def test_folders_globs_and_lists_give_absolute_names_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b, c = _image(tmp_path / "d/a.png"), _image(tmp_path / "d/sub/b.jpg"), _image(tmp_path / "e/c.png")
    (tmp_path / "d/notes.md").write_text("x")
    (tmp_path / "paths.txt").write_text("# a comment\n\ne/c.png\nd/a.png\n")
    listing = list_inputs(["d", "e/*.png", "paths.txt"])
    assert listing.files == [str(a), str(b), str(c)]
    assert listing.duplicates == 2 and listing.skipped == ["d/notes.md"] and listing.scheme is None


def test_parquet_list_and_file_uris(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = _image(tmp_path / "imgs/a.png")
    _image(tmp_path / "imgs/.hidden.png")
    pq.write_table(pa.table({"path": [str(a)]}), tmp_path / "list.parquet")
    assert list_inputs([str(tmp_path / "list.parquet")]).files == [str(a)]
    listing = list_inputs([f"file://{tmp_path}/imgs"])
    assert listing.files == [f"file://{a}"] and listing.scheme == "file"
    assert row_name(str(a), "file") == f"file://{a}" and row_name("bucket/k.jpg", "s3") == "s3://bucket/k.jpg"


def test_files_ray_could_not_read_are_error_rows_already(tmp_path, monkeypatch):
    fifo, big = tmp_path / "pipe.jpg", _image(tmp_path / "big.png")
    os.mkfifo(fifo)
    (tmp_path / "list.txt").write_text(f"{tmp_path}/gone.jpg\n{fifo}\n{big}\n")
    monkeypatch.setattr(inputs, "MAX_FILE_BYTES", 10)
    listing = list_inputs([str(tmp_path / "list.txt")])
    assert listing.files == []
    assert listing.errors[f"{tmp_path}/gone.jpg"] == f"{tmp_path}/gone.jpg: no such file"
    assert "FIFO" in listing.errors[str(fifo)] and "not read" in listing.errors[str(fifo)]
    assert "refused, a file of" in listing.errors[str(big)]


def test_local_and_remote_inputs_do_not_mix(tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(InputListError, match="one file system"):
        list_inputs([str(tmp_path / "a.png"), f"file://{tmp_path}"])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\n")
    with pytest.raises(InputListError, match="cannot read the list"):
        list_inputs([str(tmp_path / "bad.txt")])


@pytest.mark.parametrize(
    "cpus, actors, threads, plan",
    [(2, None, None, (2, 1)), (8, None, 2, (4, 2)), (8, 2, None, (2, 4)), (1, None, 4, (1, 4)), (3, 5, 1, (5, 1))],
)
def test_actor_plan_fills_the_cpus(cpus, actors, threads, plan):
    got = plan_actors(cpus, actors, threads)
    assert (got.actors, got.threads) == plan


@pytest.mark.timeout(30)  # ray.init alone would retry for minutes
def test_an_address_with_no_cluster_fails_fast(free_port):
    with pytest.raises(ClusterError, match="no Ray cluster at 127.0.0.1:"):
        check_address(f"127.0.0.1:{free_port}")
    with pytest.raises(ClusterError, match="not HOST:PORT"):
        check_address("host:port")


def test_results_folder_parts_and_resume_identity(tmp_path):
    identity = {"model": "m", "model_sha256": "ab", "topk": 5, "format": "jsonl", "decode": "reduced"}
    folder = ResultsFolder(tmp_path / "out", "jsonl")
    assert not folder.has_results()
    folder.start(identity)
    folder.write_part(error_table({"/x.jpg": "/x.jpg: no such file"}, "ab"))
    assert read_rows(tmp_path / "out") == [{"path": "/x.jpg", "error": "/x.jpg: no such file", "model_sha256": "ab"}]
    again = ResultsFolder(tmp_path / "out", "jsonl")
    assert again.resume(identity) == {"/x.jpg"} and again.next_part == 1
    with pytest.raises(ResultsError, match="written with topk 5, this run has 3"):
        ResultsFolder(tmp_path / "out", "jsonl").resume(identity | {"topk": 3})


# The command: bad input is refused before Ray starts and before anything is written.


@pytest.fixture
def images(tmp_path):
    return [str(_image(tmp_path / "imgs" / f"{i}.png")) for i in range(3)]


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="alexnet-batch")


def _earlier_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"model_sha256": "old"}')
    (out / "part-000000.parquet").write_bytes(b"old rows")
    return out


def _unchanged(out):
    return (
        sorted(os.listdir(out)) == [MANIFEST, "part-000000.parquet"]
        and (out / "part-000000.parquet").read_bytes() == b"old rows"
    )


def test_no_images_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run([TINY_ONNX, tmp_path / "empty", "-o", tmp_path / "out"])
    assert result.exit_code == 2 and "no image files" in result.output
    assert not (tmp_path / "out").exists()


def test_an_existing_output_needs_resume_or_overwrite(tmp_path, images):
    out = _earlier_output(tmp_path)
    result = _run([TINY_ONNX, *images, "-o", out])
    assert result.exit_code == 2 and "--resume to finish that run, --overwrite to replace it" in result.output
    result = _run([TINY_ONNX, *images, "-o", out, "--resume", "--overwrite"])
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert _unchanged(out)


def test_an_output_that_is_not_a_folder(tmp_path, images):
    (tmp_path / "file").write_text("mine")
    result = _run([TINY_ONNX, *images, "-o", tmp_path / "file"])
    assert result.exit_code == 2 and "is a file" in result.output
    result = _run([TINY_ONNX, *images, "-o", tmp_path / "file" / "sub"])
    assert result.exit_code == 1 and "cannot read the output folder" in result.output
    assert (tmp_path / "file").read_text() == "mine"


def test_a_model_the_runtime_cannot_open(tmp_path, images):
    out = _earlier_output(tmp_path)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    result = _run([bad, *images, "-o", out, "--overwrite"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert _unchanged(out)


def test_an_address_with_no_cluster(tmp_path, images, free_port):
    out = _earlier_output(tmp_path)
    result = _run([TINY_ONNX, *images, "-o", out, "--overwrite", "--address", f"127.0.0.1:{free_port}"])
    assert result.exit_code == 1 and "no Ray cluster at 127.0.0.1:" in result.output
    assert _unchanged(out)


def test_without_the_ray_extra_one_line_names_it(tmp_path, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = _run([TINY_ONNX, *images, "-o", tmp_path / "out"])
    assert result.exit_code == 1 and "needs the [ray] extra" in result.output
    assert not (tmp_path / "out").exists()


def test_encoded_images_predict_as_their_files_and_errors_name_them(tmp_path):
    import runtime

    good, broken = _image(tmp_path / "a.jpg", (30, 20)), tmp_path / "b.jpg"
    broken.write_bytes(good.read_bytes()[:40])
    with runtime.load(TINY_ONNX, workers=0) as predictor:
        files = predictor.predict([str(good), str(broken)], 2)
        encoded = [runtime.EncodedImage(p.read_bytes(), f"s3://bucket/{p.name}") for p in (good, broken)]
        read_elsewhere = predictor.predict(encoded, 2)
    assert read_elsewhere[0].source == "s3://bucket/a.jpg"
    assert read_elsewhere[0].indices == files[0].indices and read_elsewhere[0].probabilities == files[0].probabilities
    assert read_elsewhere[1].error == files[1].error.replace(str(broken), "s3://bucket/b.jpg")


def test_a_failed_ray_job_is_one_line_and_keeps_the_rows_written(tmp_path, monkeypatch):
    from runtime.batch import cli

    def failing(ray, spec, files, quiet):
        yield error_table({files[0]: "x"}, "ab")
        raise RuntimeError("ray.exceptions.RayTaskError: a worker died\nTraceback ...")

    monkeypatch.setattr(job, "result_tables", failing)
    monkeypatch.setattr(cli, "_ray", lambda: None)
    written = []
    flusher = job.Flusher(written.append, rows=1)
    with pytest.raises(ClusterError, match=r"^the Ray job failed after 1 rows: .*a worker died; --resume continues"):
        cli._stream(None, ["/a.jpg", "/b.jpg"], flusher, quiet=True)
    assert [t.num_rows for t in written] == [1]


def test_parts_hold_at_most_rows_per_part():
    written = []
    flusher = job.Flusher(written.append, seconds=3600, rows=4)
    flusher.add(error_table({f"/{i}.jpg": "x" for i in range(3)}, "ab"))
    flusher.add(error_table({f"/{i}.jpg": "x" for i in range(3, 13)}, "ab"))
    flusher.flush()
    assert [t.num_rows for t in written] == [4, 4, 4, 1] and flusher.written == 13 and flusher.errors == 13


def test_a_refused_join_names_token_authentication(monkeypatch):
    from runtime.batch.job import _auth_hint

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert "RAY_AUTH_MODE=token" in _auth_hint("head:6379") and _auth_hint(None) == ""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert _auth_hint("head:6379") == ""
