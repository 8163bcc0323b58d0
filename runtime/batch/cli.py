"""alexnet-batch: alexnet-run's predictions for a whole archive, on Ray Data, into Parquet or JSON Lines."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from runtime.batch.inputs import LIST_SUFFIXES, Listing, list_inputs
from runtime.batch.job import ADDRESS_ENV, PART_ROWS, PART_SECONDS, plan_actors
from runtime.batch.results import FORMATS, ResultsFolder
from runtime.cli import printable
from runtime.cliutil import handle_errors
from runtime.errors import DeployError, first_line
from runtime.options import (
    batch_size_option,
    command,
    exact_decode_option,
    output_option,
    quiet_option,
    threads_option,
    topk_option,
    verify_option,
)


@command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@output_option("Folder of results: part-*.parquet (or .jsonl) and alexnet-batch.json.", kind="dir", required=True)
@click.option(
    "--format", "fmt", type=click.Choice(tuple(FORMATS)), default="parquet", show_default=True, help="Results format."
)
@click.option("--resume", is_flag=True, help="Finish the run that wrote --output: predict only the files it lacks.")
@click.option("--overwrite", is_flag=True, help="Replace --output; the old results stay until the new run ends.")
@click.option(
    "--address",
    envvar=ADDRESS_ENV,
    default=None,
    help=f"A Ray cluster to run on (HOST:PORT, ray://HOST:PORT, auto); also ${ADDRESS_ENV}. "
    "Default: a local one with this machine's cores.",
)
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Model replicas. Default: CPUs / --threads.")
@threads_option("Per actor. Default: CPUs / --actors, else 1 (actors x threads = the cluster's CPUs).")
@batch_size_option("Per model call. Default: the artifact's fixed batch or limit, else 32.")
@click.option(
    "--rows-per-part",
    type=click.IntRange(min=1),
    default=PART_ROWS,
    show_default=True,
    help=f"Rows per part file; a part is also written every {PART_SECONDS:g} s. What a killed run loses at most, "
    "beside the batches in flight.",
)
@topk_option()
@exact_decode_option()
@verify_option()
@quiet_option()
@handle_errors
def main(**kwargs: Any) -> None:
    """Predict every image in INPUT... with MODEL on a Ray cluster; one row per file in --output.

    INPUT is a file, a folder (walked), a quoted glob ('photos/**/*.jpg'), a list of paths
    (.txt, one per line; .parquet, a `path` column) or a URI pyarrow reads (s3://, gs://).
    Ray reads the files; a pool of actors, each holding MODEL once, decodes and predicts them
    exactly as alexnet-run does. A file that cannot be read or decoded is a row with `error`,
    never a failed job; an interrupted run keeps its finished parts and --resume completes it.

    \b
    Examples:
      alexnet-batch model.onnx photos/ -o results/                  # a local Ray, one actor per core
      alexnet-batch model.onnx 'archive/**/*.jpg' -o results/ --resume
      alexnet-batch model.onnx paths.txt -o results/ --format jsonl
      RAY_ADDRESS=head:6379 alexnet-batch /models/m.onnx s3://bucket/photos/ -o results/
    """
    _run(**kwargs)


def _run(
    model: Path,
    inputs: tuple[str, ...],
    output: Path,
    fmt: str,
    resume: bool,
    overwrite: bool,
    address: str | None,
    actors: int | None,
    threads: int | None,
    batch_size: int | None,
    rows_per_part: int,
    topk: int,
    decode: str,
    verify: bool,
    quiet: bool,
) -> None:
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    ray = _import_ray()
    listing = _listing(inputs)
    folder = _results_folder(output, fmt, resume, overwrite)
    identity, batch = _open_model(model, topk, fmt, decode, verify, batch_size)
    from runtime.batch.job import cluster_cpus, connect

    connect(address, _local_cpus(), quiet)
    if quiet:  # Ray Data's INFO and WARNING lines (it sets its own logger's level): a CLI may set its loggers
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        plan = plan_actors(cluster_cpus(ray), actors, threads)
        _say(quiet, f"{len(listing.names)} files, {plan.describe()}, batch {batch}: {model}")
        if overwrite and folder.has_results():
            from runtime.outputs import replace_directory

            replace_directory(
                output,
                lambda tmp: _predict_into(
                    ResultsFolder(Path(tmp), fmt), identity, listing, plan, batch, rows_per_part, quiet, replacing=True
                ),
                what="results",
            )
        else:
            _predict_into(folder, identity, listing, plan, batch, rows_per_part, quiet, resume=resume)
    finally:
        ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        from runtime.launch import missing_extra_message

        raise click.ClickException(
            missing_extra_message("alexnet-batch", (exc.name or "ray").split(".")[0]).removeprefix("Error: ")
        ) from None
    return ray


def _listing(inputs: tuple[str, ...]) -> Listing:
    listing = list_inputs(inputs)
    if listing.skipped:
        click.echo(f"skipped {len(listing.skipped)} file(s) without an image suffix", err=True)
    if listing.duplicates:
        click.echo(f"{listing.duplicates} file(s) listed more than once: one row each", err=True)
    if not listing.names:
        kinds = f"image files ({', '.join(LIST_SUFFIXES)} files list paths)"
        raise click.UsageError(f"no {kinds} found in {printable(', '.join(inputs))}")
    return listing


def _results_folder(output: Path, fmt: str, resume: bool, overwrite: bool) -> ResultsFolder:
    folder = ResultsFolder(output, fmt)
    if folder.has_results() and not (resume or overwrite):
        raise click.UsageError(
            f"{printable(str(output))} holds results already: --resume to finish that run, --overwrite to replace it"
        )
    return folder


def _open_model(
    model: Path, topk: int, fmt: str, decode: str, verify: bool, batch_size: int | None
) -> tuple[dict[str, Any], int]:
    """The run's identity (model hash, options) and batch size, from opening MODEL here once:
    a model the runtime cannot open is one line before anything is started or written."""
    import runtime

    path = os.path.abspath(model)  # the actors' working folder is not this one
    with runtime.load(path, workers=0, verify=verify) as predictor:
        sha = predictor.metadata.weights_sha256 or _file_sha256(path)
        batch = batch_size or predictor.batch_size
    identity = {"model": path, "model_sha256": sha, "topk": topk, "format": fmt, "decode": decode, "verify": verify}
    return identity, batch


def _file_sha256(path: str) -> str:
    """A foreign artifact (no recorded weights hash): the file's own, or "" for a folder (.mlpackage)."""
    from runtime.fileio import file_sha256

    return file_sha256(path) if os.path.isfile(path) else ""


def _local_cpus() -> int:
    from runtime.pipeline import available_cores

    return available_cores()


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(printable(text), err=True)


def _predict_into(
    folder: ResultsFolder,
    identity: dict[str, Any],
    listing: Listing,
    plan: Any,
    batch: int,
    rows_per_part: int,
    quiet: bool,
    resume: bool = False,
    replacing: bool = False,
) -> None:
    """Rows for every listed name not in `folder` yet: the driver's errors, then Ray's predictions."""
    from runtime.batch.job import Flusher, JobSpec
    from runtime.batch.results import error_table

    done = folder.resume(identity) if resume and folder.has_results() else set()
    if not done:
        folder.start(identity)
    flusher = Flusher(folder.write_part, rows=rows_per_part)
    errors = {name: error for name, error in listing.errors.items() if name not in done}
    if errors:
        flusher.add(error_table(errors, identity["model_sha256"]))
    todo = [name for name in listing.files if name not in done]
    keys = ("model", "topk", "decode", "model_sha256", "verify")
    spec = JobSpec(plan=plan, batch_size=batch, scheme=listing.scheme, **{k: identity[k] for k in keys})
    started = time.monotonic()
    try:
        _stream(spec, todo, flusher, quiet)
    except KeyboardInterrupt:
        flusher.flush()
        if replacing:  # the new results were in a temp folder, removed: the old ones are as they were
            click.echo(f"interrupted: {folder.path.name} not replaced", err=True)
        else:
            click.echo(
                f"interrupted: {flusher.written} rows written to {folder.path}; --resume finishes the run", err=True
            )
        raise SystemExit(130) from None
    except DeployError:
        flusher.flush()
        raise
    flusher.flush()
    _summary(folder, flusher, len(done), len(todo), time.monotonic() - started, quiet)


def _stream(spec: Any, todo: list[str], flusher: Any, quiet: bool) -> None:
    """Ray's rows for `todo` into `flusher`, then an error row for each file Ray did not find."""
    from runtime.batch.job import ClusterError, result_tables
    from runtime.batch.results import error_table

    seen: set[str] = set()
    try:
        if todo:
            for table in result_tables(_ray(), spec, todo, quiet):
                seen.update(table.column("path").to_pylist())
                flusher.add(table)
    except Exception as exc:  # Ray's task, actor and I/O errors: one line; the parts written stay
        raise ClusterError(
            f"the Ray job failed after {flusher.written + flusher.count} rows: {first_line(exc)}; "
            "--resume continues from the rows written"
        ) from None
    gone = {name: f"{name}: no such file (gone before it was read)" for name in todo if name not in seen}
    if gone:
        flusher.add(error_table(gone, spec.model_sha256))


def _ray() -> Any:
    return sys.modules["ray"]


def _summary(folder: ResultsFolder, flusher: Any, done: int, predicted: int, seconds: float, quiet: bool) -> None:
    rate = f", {predicted / seconds:.1f} images/s" if predicted and seconds > 0 else ""
    kept = f"; {done} were there from the run resumed" if done else ""
    failed = f" ({flusher.errors} could not be predicted: their rows have `error`)" if flusher.errors else ""
    _say(quiet, f"{flusher.written} rows written to {folder.path}{failed}{kept}{rate}")
