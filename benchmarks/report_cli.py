"""alexnet-report: every deployment option of a checkpoint side by side, in one command.

Exports every format x precision that applies (export.export_artifact, int8 behind its gate),
evaluates each on the checkpoint's own data (or --data) against the fp32 checkpoint, times each
on every device with alexnet-bench's isolated workers, and writes report.md, report.json and a
self-contained report.html, with a recommendation per device.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

# Imported here, not in the steps: torch, onnx and matplotlib are needed by every run, and on an install
# without the [bench] extra the launcher (runtime.launch) turns this import's failure into one line.
from alexnet.checkpoint import load_checkpoint
from benchmarks.options import parse_devices, progress_line
from runtime import formats as format_table
from runtime import options
from runtime.cliutil import handle_errors

FORMATS = format_table.names(benchmarked=True)  # every format the runtime runs (the format table's)
SCHEMA = "alexnet-report/1"
OUTPUT_FILES = ("report.md", "report.json", "report.html")

EPILOG = """\b
Examples:
  alexnet-report runs/demo/best.pth                          # every format x fp32,fp16,int8 -> report/
  alexnet-report runs/demo/best.pth --formats onnx --precisions fp32,int8 --batch-sizes 1,32 -o onnx-report/
  alexnet-report runs/demo/best.pth --data photos/ --devices cpu --min-time 5
"""


def _choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    asked = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in asked if p not in allowed]
    if unknown or not asked:
        raise click.UsageError(f"{flag} takes a comma-separated list of {', '.join(allowed)} (got {text!r})")
    return list(dict.fromkeys(asked))


@options.command(epilog=EPILOG)
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@options.data_option("For evaluation [default: the checkpoint's training data].")
@click.option(
    "--formats",
    default=",".join(FORMATS),
    show_default=True,
    help="Comma-separated export formats (alexnet-export --list-formats); one whose export extra is missing is "
    "a skipped row.",
)
@options.precisions_option("Comma-separated; each format gets those that apply.", default="fp32,fp16,int8")
@options.calibration_option()
@options.devices_option()
@options.batch_sizes_option("To time.")
@options.max_images_option("Evaluated per artifact.", default=1000)
@options.threads_option("[default: physical cores]")
@options.warmup_option()
@options.min_time_option("A row: one artifact at one batch size.", default=2.0)
@options.repeats_option()
@options.quick_option()
@options.output_option(
    "Folder for the report files and the artifacts (artifacts/).", kind="dir", default=Path("report"), name="out_dir"
)
@click.option(
    "--prune-artifacts/--keep-all-artifacts",
    default=True,
    show_default=True,
    help="After the report, delete the exported artifacts that no goal recommends (the report and report.json "
    "still describe them, marked removed); --keep-all-artifacts keeps every one.",
)
@options.quiet_option()
@handle_errors
def main(
    checkpoint: Path,
    data: str | None,
    formats: str,
    precisions: str,
    calibration: str | None,
    devices: str,
    batch_sizes: tuple[int, ...],
    max_images: int,
    threads: int | None,
    warmup: int,
    min_time: float,
    repeats: int,
    quick: bool,
    out_dir: Path,
    prune_artifacts: bool,
    quiet: bool,
) -> None:
    """Export, validate, evaluate and benchmark CHECKPOINT in every format and precision; write
    report.md, report.json and report.html (self-contained) into -o, the artifacts into -o/artifacts/.

    A format that cannot run here (Core ML off macOS: evaluated by the Core ML reference evaluator, not
    timed) or fails (an int8 model that misses its gate) is a row with the reason; the report still
    completes. Then the artifacts no goal recommends are deleted, unless --keep-all-artifacts.
    """
    from export.cli_jobs import plan_jobs

    os.environ.setdefault("NNCF_CI", "1")  # no telemetry from nncf, as in alexnet-bench
    jobs = plan_jobs(tuple(_choices(formats, FORMATS, "--formats")), None, precisions)
    device_list, sizes = parse_devices(devices), list(batch_sizes)
    _check_places(checkpoint, out_dir)
    # every setting, in the order the reproducing command gives them
    params = dict(data=data, formats=formats, precisions=precisions, calibration=calibration)
    params |= dict(devices=",".join(device_list), batch_sizes=",".join(map(str, sizes)), max_images=max_images)
    params |= dict(threads=threads, warmup=warmup, min_time=min_time, repeats=repeats, quick=quick)
    params |= dict(keep_all_artifacts=not prune_artifacts, output=str(out_dir))
    settings = _settings(device_list, sizes, threads, warmup, min_time, repeats, quick)
    from export import QuantizeOptions

    quantize = QuantizeOptions(calibration=calibration)
    doc = _build(checkpoint, jobs, out_dir, (data, max_images), quantize, settings, quiet)
    doc["command"] = _command(checkpoint, params)
    _finish(doc, out_dir, prune_artifacts)


def _finish(doc: dict[str, Any], out_dir: Path, prune: bool) -> None:
    """Write the report, then delete the artifacts it marks removed (after: a failed write deletes nothing);
    one that could not be deleted is a warning, and the report is written again to say it stays."""
    from benchmarks import report_prune

    report_prune.mark(doc, prune)
    _write(doc, out_dir)
    problems = report_prune.remove(doc, out_dir / "artifacts", out_dir)
    for line in problems:
        click.echo(f"warning: {line}", err=True)
    if problems:
        _write(doc, out_dir, echo=False)
    if doc["pruning"]["removed"]:
        click.echo(
            f"removed {len(doc['pruning']['removed'])} artifacts no goal recommends ({', '.join(doc['pruning']['removed'])}); "
            f"{report_prune.KEEP_FLAG} keeps them",
            err=True,
        )


def _check_places(checkpoint: Path, out_dir: Path) -> None:
    """Before any work: the checkpoint is a file; the output folder and its three files can be written."""
    from runtime.errors import DeployError
    from runtime.outputs import OutputError, check_output_path

    if not checkpoint.is_file():
        raise DeployError(f"checkpoint {checkpoint} is not a file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)  # (click has refused a file there)
    except OSError as exc:
        raise click.UsageError(f"-o {out_dir}: cannot create it: {exc.strerror or exc}") from None
    try:
        for name in OUTPUT_FILES:
            check_output_path(out_dir / name, what="-o")
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None


def _settings(
    devices: list[str], sizes: list[int], threads: int | None, warmup: int, min_time: float, repeats: int, quick: bool
) -> Any:
    """The benchmark's settings. Sets torch's thread count: process-wide, which only an entry point may do."""
    import torch

    from benchmarks.cli import QUICK_MEASURE
    from benchmarks.machine import physical_cores
    from benchmarks.suite import Settings
    from benchmarks.timing import Budget

    threads = threads or physical_cores()
    torch.set_num_threads(threads)
    budget = Budget(iterations=None, min_time=min_time, rounds=repeats)
    # The machine's limits are measured once, before the timing (alexnet-bench measures again after each
    # batch size and keeps the best; here that would double the run for the % of floor column alone).
    measure = QUICK_MEASURE if quick else {}
    return Settings((), devices, sizes, budget, warmup=warmup, threads=threads, remeasure=False, measure=measure)


def _build(
    checkpoint: Path, jobs: list, out_dir: Path, data: tuple[str | None, int], quantize: Any, settings: Any, quiet: bool
) -> dict[str, Any]:
    """Export, evaluate, benchmark: the report document (every number)."""
    from benchmarks import deploy_report as steps
    from benchmarks import recommend
    from benchmarks.report import build_document

    say = (lambda _m: None) if quiet else (lambda message: click.echo(message, err=True))
    ckpt = load_checkpoint(checkpoint)
    dataset, source = steps.evaluation_data(ckpt, *data, say)  # a bad --data fails before the exports
    entries = steps.export_entries(checkpoint, jobs, out_dir / "artifacts", say, quantize)
    steps.evaluate_entries(entries, ckpt, dataset, say)
    say(
        f"[benchmark] {len(entries)} artifacts on {', '.join(settings.devices)}, batch sizes "
        f"{', '.join(map(str, settings.batch_sizes))}"
    )
    status, done = progress_line(not quiet)
    try:
        parts = steps.benchmark_entries(entries, checkpoint, settings, status)
    finally:
        done()
    steps.attach_timings(entries, parts["result"].rows, settings.devices)
    artifacts = [e.to_dict() for e in entries]
    gate = recommend.gate_thresholds()
    bench = build_document(command="(within alexnet-report)", **parts)
    return {
        "schema": SCHEMA,
        "machine": parts["machine"],
        "model": parts["model"],
        "data": {"source": source, "split": "val", "images": len(dataset)},
        "gate": gate,
        "devices": list(settings.devices),
        "batch_sizes": list(settings.batch_sizes),
        "artifacts": artifacts,
        "recommendations": [r for d in settings.devices for r in recommend.recommend(artifacts, d, gate)],
        "excluded": [x for d in settings.devices for x in recommend.excluded(artifacts, gate, d)],
        "warnings": bench["warnings"],
        "benchmark": bench,
    }


def _command(checkpoint: Path, params: dict[str, Any]) -> str:
    """The exact command that reproduces the report, every setting explicit."""
    parts = ["alexnet-report", str(checkpoint)]
    for key, value in params.items():
        if value is not None and value is not False:
            flag = "-o" if key == "output" else f"--{key.replace('_', '-')}"
            parts += [flag] + ([] if value is True else [str(value)])
    return shlex.join(parts)


def _write(doc: dict[str, Any], out_dir: Path, echo: bool = True) -> None:
    from benchmarks.report_pages import render_html, render_markdown
    from runtime.outputs import dumps_json, write_text

    markdown = render_markdown(doc)
    if echo:
        click.echo(markdown)  # on screen first: a failed write loses nothing
    write_text(out_dir / "report.json", dumps_json(doc, indent=2) + "\n", what="-o")
    write_text(out_dir / "report.md", markdown, what="-o")
    write_text(out_dir / "report.html", render_html(doc), what="-o")
    if echo:
        click.echo(f"wrote {out_dir / 'report.md'}, {out_dir / 'report.json'} and {out_dir / 'report.html'}", err=True)


if __name__ == "__main__":
    main(prog_name=os.path.basename(sys.argv[0]))
