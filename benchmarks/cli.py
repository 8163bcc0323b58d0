"""alexnet-bench: latency and throughput of AlexNet per backend, device and batch size."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from alexnet.model import VARIANTS
from benchmarks import report
from benchmarks.options import (
    BACKENDS,
    PRECISIONS,
    check_outputs,
    clock_threads,
    command_line,
    parse_backends,
    parse_devices,
    parse_precisions,
    progress_line,
    timed_seconds,
)
from benchmarks.suite import Settings
from benchmarks.timing import Budget
from runtime import options
from runtime.cliutil import handle_errors
from runtime.outputs import is_stdout

QUICK_MEASURE = {"sizes": (1024,), "mbytes": 64, "repeats": 2}  # --quick: measure_limits options, a first look


EPILOG = """\b
Examples:
  alexnet-bench                                   # fresh torchvision AlexNet, every backend, batch 1,8,32
  alexnet-bench runs/demo/best.pth --backends pytorch,onnxruntime --batch-sizes 1
  alexnet-bench --devices cpu --threads 2 --min-time 5 --json cpu.json --markdown cpu.md --plot cpu.png
  alexnet-bench --variant cifar --backends onnxruntime --batch-sizes 1,8 --min-time 0.2 --repeats 2 --quick
  alexnet-bench --devices cpu --clock cpu --min-time 6      # one thread, CPU time: for a busy shared machine
  alexnet-bench --devices cpu --backends ort,ov --precisions fp32,int8   # int8 against fp32 and eager
"""


@options.command(epilog=EPILOG)
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--backends",
    default="all",
    show_default=True,
    help=f"Comma-separated: {', '.join(BACKENDS)} (or all; a format's name stands for its backend: onnx). "
    "PyTorch eager fp32 always runs: it is the baseline.",
)
@options.precisions_option(
    f"Comma-separated: {', '.join(PRECISIONS)} (or all): the variants run. int8: the int8 artifacts "
    "export writes (ONNX on onnxruntime, OpenVINO IR quantized by NNCF, ExecuTorch and LiteRT by PT2E), each "
    "through the accuracy gate (CPU).",
    default="all",
)
@options.devices_option()
@options.batch_sizes_option()
@options.threads_option("For every backend [default: physical cores].")
@options.warmup_option()
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Timed calls per row, over all rounds.")
@options.min_time_option("[default: 2, when --iterations is not given]")
@options.repeats_option("Every row is timed in this many interleaved blocks; their spread shows the noise.")
@options.variant_option(VARIANTS, "Without a checkpoint.", default="torchvision")
@options.num_classes_option("Without a checkpoint.", default=1000)
@options.image_size_option("Default: the variant's or checkpoint's.")
@options.json_file_option("json_out")
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the Markdown report (- for stdout; the table then goes to stderr).",
)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write latency/throughput plots (PNG).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the exported artifacts here [default: a temporary directory].",
)
@click.option("--note", default=None, help="Conditions of the run, written into the outputs (e.g. 'quiet machine').")
@click.option(
    "--clock",
    type=click.Choice(["wall", "cpu"]),
    default="wall",
    show_default=True,
    help="wall: elapsed time. cpu: the process's CPU time, with one thread on the CPU: steadier on a shared machine.",
)
@options.quick_option()
@options.quiet_option()
@handle_errors
def main(
    checkpoint: str | None,
    backends: str,
    precisions: str,
    devices: str,
    batch_sizes: tuple[int, ...],
    threads: int | None,
    warmup: int,
    iterations: int | None,
    min_time: float | None,
    repeats: int,
    variant: str,
    num_classes: int,
    image_size: int | None,
    json_out: Path | None,
    markdown: str | None,
    plot: str | None,
    workdir: str | None,
    note: str | None,
    clock: str,
    quick: bool,
    quiet: bool,
) -> None:
    """Benchmark AlexNet inference per backend, device and batch size, beside the machine's physical floor.

    Without CHECKPOINT a freshly initialized model is timed (speed does not depend on the weights).
    Prints a Markdown table; --json keeps every figure.
    """
    # nncf sends usage telemetry from every quantize call unless this is set (in nncf 3.4 the
    # variable does nothing else): a benchmark must not talk to the network. Process-wide, so here.
    os.environ.setdefault("NNCF_CI", "1")
    min_time = timed_seconds(iterations, min_time)
    backend_list, device_list, sizes = parse_backends(backends), parse_devices(devices), list(batch_sizes)
    precision_list = parse_precisions(precisions)
    threads = clock_threads(clock, threads, device_list)
    check_outputs(json_out, markdown, plot)  # before the long run: a result nobody can write is lost
    budget = Budget(iterations=iterations, min_time=min_time, rounds=repeats)
    settings = _settings(backend_list, device_list, sizes, precision_list, budget, threads, warmup, clock, quick)
    model_options = dict(variant=variant, num_classes=num_classes, image_size=image_size)
    outputs = dict(json=json_out, markdown=markdown, plot=plot)
    command = command_line(checkpoint, settings, model_options, outputs)
    parts = _run_with_progress(checkpoint, workdir, model_options, settings, quiet)
    _show_and_write(report.build_document(command=command, note=note, **parts), json_out, markdown, plot)


def _settings(
    backends: list[str],
    devices: list[str],
    sizes: list[int],
    precisions: list[str],
    budget: Budget,
    threads: int | None,
    warmup: int,
    clock: str,
    quick: bool,
) -> Settings:
    """The suite's settings. Sets torch's thread count: process-wide, which only an entry point may do."""
    import torch

    from benchmarks.machine import physical_cores

    threads = threads or physical_cores()
    torch.set_num_threads(threads)
    return Settings(
        backends,
        devices,
        sizes,
        budget,
        warmup=warmup,
        threads=threads,
        remeasure=not quick,
        clock=clock,
        measure=QUICK_MEASURE if quick else {},
        precisions=precisions,
    )


def _run_with_progress(
    checkpoint: str | None, workdir: str | None, model_options: dict[str, Any], settings: Settings, quiet: bool
) -> dict[str, Any]:
    """`_run` in `workdir`, or in a temporary directory removed afterwards, under a progress line."""
    say, done = progress_line(not quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as tmp:
            if workdir:
                os.makedirs(workdir, exist_ok=True)
            return _run(checkpoint, Path(workdir or tmp), model_options, settings, say)
    finally:
        done()


def _show_and_write(doc: dict[str, Any], json_out: Path | None, markdown: str | None, plot: str | None) -> None:
    # The table first (on stderr when stdout carries --json/--markdown -): a failed write loses nothing on screen.
    click.echo(report.render_markdown(doc), err=is_stdout(json_out) or is_stdout(markdown))
    for warning in doc["warnings"]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if json_out:
        report.write_json(doc, json_out)
    if markdown:
        report.write_markdown(doc, markdown)
    if plot:
        report.write_plot(doc, plot)


def _run(
    checkpoint: str | None, workdir: Path, model_options: dict[str, Any], settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    """Open the model (the checkpoint, or a fresh one saved in `workdir`) and benchmark it."""
    from benchmarks.artifacts import open_source
    from benchmarks.measure import run_benchmark

    say("loading the model")
    return run_benchmark(open_source(checkpoint, workdir, **model_options), workdir, settings, say)
