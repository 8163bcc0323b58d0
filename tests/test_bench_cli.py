"""alexnet-bench: flags, errors and one tiny end-to-end run (machine limits stubbed to save time)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from benchmarks import cli, options, suite
from benchmarks.machine import Limits
from runtime.option_types import BatchSizes


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--iterations", "2", "--min-time", "1"], "not both"),
        (["--backends", "pytorch,tensorrt"], "unknown backend 'tensorrt'"),
        (["--devices", "tpu"], "unknown device 'tpu'"),
        (["--batch-sizes", "1,x"], "comma-separated integers"),
        (["--batch-sizes", "0"], "at least 1"),
        (["--backends", ","], "unknown backend ','"),
        (["--precisions", "fp32,int4"], "unknown precision 'int4'"),
        (["--clock", "cpu", "--threads", "2"], "--clock cpu measures one thread"),
        (["--clock", "cpu", "--devices", "cpu,cuda"], "--clock cpu measures one thread"),
        (["--json", "/no/such/dir/out.json"], "does not exist"),
    ],
)
def test_bad_flags_are_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    result = invoke(str(tmp_path / "nope.pth"), "--backends", "pytorch", "--quiet")
    assert result.exit_code == 1
    assert "nope.pth does not exist" in result.output and "Traceback" not in result.output


def test_aliases_and_all():
    assert cli.parse_backends("compile,ort,ov") == ["torch.compile", "onnxruntime", "openvino"]
    assert cli.parse_backends("all") == list(cli.BACKENDS)
    assert BatchSizes().convert("32,1,8,1", None, None) == (1, 8, 32)
    assert cli.parse_precisions("all") == ["fp32", "fp16", "bf16", "int8"]
    assert cli.parse_precisions("int8, fp32,int8") == ["int8", "fp32"]


def test_every_benchmarked_format_has_its_backend_and_its_name_as_an_alias():
    from runtime import formats

    for fmt in formats.FORMATS.values():
        if fmt.benchmarked:
            assert fmt.backend in cli.BACKENDS and cli.parse_backends(fmt.name) == [fmt.backend]
    assert cli.parse_backends("executorch,litert") == ["executorch", "litert"]
    assert cli.parse_backends("tflite,onnx,executorch") == ["litert", "onnxruntime", "executorch"]
    assert {"executorch", "litert"} <= set(cli.parse_backends("all"))
    help_text = " ".join(invoke("--help").output.split())
    assert "openvino, coreml, executorch, litert (or all" in help_text


def test_canonical_command_is_one_reproducible_line():
    line = options.canonical_command(
        "runs/my ckpt.pth", {"backends": "pytorch", "threads": 2, "iterations": None, "quiet": True, "note": "a b"}
    )
    assert line == "alexnet-bench 'runs/my ckpt.pth' --backends pytorch --threads 2 --quiet --note 'a b'"


# A cifar model on one thread, the machine limits stubbed: a run of seconds.
TINY_ARGS = (
    "--variant",
    "cifar",
    "--num-classes",
    "10",
    "--backends",
    "pytorch",
    "--devices",
    "cpu",
    "--threads",
    "1",
    "--quick",
    "--quiet",
)


def stub_limits(monkeypatch):
    fake = Limits("cpu", {"fp32": 50.0}, 5.0, {"stub": True})
    monkeypatch.setattr(suite, "measure_limits", lambda device, precisions, **_: fake)


@pytest.mark.slow  # a whole alexnet-bench run (~70 s): test-all
def test_tiny_run_writes_json_markdown_and_plot(tmp_path, monkeypatch):
    stub_limits(monkeypatch)
    out = {ext: tmp_path / f"bench.{ext}" for ext in ("json", "md", "png")}
    result = invoke(
        *TINY_ARGS,
        "--batch-sizes",
        "1,2",
        "--iterations",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
        str(out["json"]),
        "--markdown",
        str(out["md"]),
        "--plot",
        str(out["png"]),
        "--note",
        "test run",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out["json"].read_text())
    assert data["command"].startswith(
        "alexnet-bench --backends pytorch --precisions fp32,fp16,bf16,int8 --devices cpu --batch-sizes 1,2 --threads 1"
    )
    assert data["settings"]["precisions"] == ["fp32", "fp16", "bf16", "int8"]
    assert "--note" not in data["command"] and data["note"] == "test run"
    assert data["settings"]["quick"] is True and "--quick" in data["command"]
    assert (
        data["settings"]["iterations"] == 2 and data["settings"]["min_time"] is None and data["settings"]["rounds"] == 2
    )
    assert data["model"]["variant"] == "cifar" and data["model"]["fresh"] is True
    assert data["machine"]["threads"] == 1 and "torch" in data["machine"]["libraries"]
    rows = {(r["variant"], r["batch_size"]): r for r in data["rows"]}
    # e2e: the checkpoint through alexnet-run's path, on 500x375 and on 12-megapixel photos
    variants = ("fp32", "fp32 channels_last", "fp32 e2e", "fp32 e2e 12mp")
    assert set(rows) == {(v, n) for v in variants for n in (1, 2)}
    assert 0.0 <= rows[("fp32 e2e", 2)]["preprocess_share"] <= 1.0
    assert all(r["status"] == "ok" and r["latency_ms"]["n"] == 2 for r in rows.values())
    # the floor comes from the (stubbed) limits: 2 x 0.248 GFLOP at 50 GFLOP/s vs 233 MB at 5 GB/s
    assert rows[("fp32", 2)]["bound"] == "memory"
    assert rows[("fp32", 2)]["floor_ms"] == pytest.approx(data["model"]["weight_bytes"]["fp32"] / 5e6)
    assert "| backend | variant | batch |" in out["md"].read_text()
    assert "### End to end" in out["md"].read_text()
    assert "| backend | variant | batch |" in result.output  # the same table on stdout
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--plot"])
def test_unwritable_output_fails_before_the_run(tmp_path, monkeypatch, flag):
    monkeypatch.setattr(cli, "_run", lambda *a, **k: pytest.fail("benchmarked before checking the outputs"))
    (tmp_path / "results").write_text("a file")
    result = invoke(
        "--backends", "pytorch", "--devices", "cpu", "--quiet", flag, str(tmp_path / "results" / "out.json")
    )
    assert result.exit_code == 2, result.output
    assert f"cannot write {flag}" in result.output and "results is a file, not a directory" in result.output


def test_plot_format_and_stdout_checked_before_the_run(monkeypatch):
    monkeypatch.setattr(cli, "_run", lambda *a, **k: pytest.fail("benchmarked before checking the outputs"))
    result = invoke("--backends", "pytorch", "--devices", "cpu", "--quiet", "--plot", "out.xyz")
    assert result.exit_code == 2 and "cannot write .xyz plots" in result.output
    both = invoke("--backends", "pytorch", "--devices", "cpu", "--quiet", "--json", "-", "--markdown", "-")
    assert both.exit_code == 2 and "both go to stdout" in both.output


def tiny_run(monkeypatch, *args: str):
    stub_limits(monkeypatch)
    return invoke(*TINY_ARGS, "--batch-sizes", "1", "--iterations", "1", "--repeats", "1", "--warmup", "0", *args)


@pytest.fixture(scope="module")
def stdout_run():
    """One real tiny run with --json -: (its CliRunner result, the suite result it printed). Tests of
    what the command does with a result reuse that result instead of timing the model again."""
    results = []
    real = suite.run_suite
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(suite, "run_suite", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
        run = tiny_run(patch, "--json", "-")
    return run, results[0]


@pytest.mark.slow  # a whole alexnet-bench run (~70 s): test-all
def test_json_to_stdout_and_table_to_stderr(stdout_run):
    result, _ = stdout_run
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"] == "alexnet-bench/1"
    assert "| backend | variant | batch |" in result.stderr


@pytest.mark.slow  # a whole alexnet-bench run (~70 s): test-all
def test_failed_write_keeps_the_printed_table(tmp_path, monkeypatch, stdout_run):
    import errno
    import os

    from runtime import outputs

    real_replace = os.replace
    monkeypatch.setattr(suite, "run_suite", lambda *a, **k: stdout_run[1])  # the timed rows: not the point here

    def full(src, dst):  # only the report's rename: the run itself may save files
        if str(dst) == str(tmp_path / "b.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", full)
    result = tiny_run(monkeypatch, "--json", str(tmp_path / "b.json"))
    assert result.exit_code == 1
    assert "| backend | variant | batch |" in result.stdout  # printed before the write
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"Error: cannot write --json {tmp_path / 'b.json'}: No space left on device"
    )
    assert os.listdir(tmp_path) == []
