"""alexnet-eval: accuracy, per-class metrics and the confusion matrix of a checkpoint or exported model."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
from pathlib import Path
from typing import Any

import click
import numpy as np

from runtime.cliutil import echo_notice, handle_errors
from runtime.metadata import ArtifactMetadata
from runtime.options import (
    backend_option,
    batch_size_option,
    command,
    data_option,
    device_option,
    exact_decode_option,
    image_size_option,
    json_file_option,
    seed_option,
    split_option,
    synthetic_val_option,
    workers_option,
)


def _confusion_csv(matrix: list[list[int]], class_names: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *row])
    return buffer.getvalue()


def _training_defaults(model: Path, seed: int, val_per_class: int | None) -> tuple[int, int | None]:
    """A checkpoint remembers its run's seed and synthetic set size: evaluate on the same val split
    unless told otherwise (a different seed could put training images of a folder into val)."""
    if model.suffix not in (".pth", ".safetensors"):
        return seed, val_per_class
    from alexnet.checkpoint import load_checkpoint

    stored = (load_checkpoint(model).training or {}).get("args", {})
    context = click.get_current_context()
    if context.get_parameter_source("seed") == click.core.ParameterSource.DEFAULT:
        seed = stored.get("seed", seed)
    if val_per_class is None:
        val_per_class = stored.get("synthetic_val_per_class")
    return seed, val_per_class


# How alexnet-eval (and alexnet-viz's embeddings and predictions) pick the evaluation split.
SEED_NOTE = "Of the synthetic set / folder split; not given: a checkpoint's own (as in training)."
SYNTHETIC_VAL_NOTE = "Default: the checkpoint's, else 50 (as in training)."


@command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@data_option(default="synthetic")
@split_option()
@backend_option()
@device_option()
@batch_size_option(default=64)
@image_size_option(
    "Evaluate a checkpoint at another input size (resize and crop scaled as 256/224). "
    "Exported models keep the size they were exported with."
)
@seed_option(SEED_NOTE)
@synthetic_val_option(SYNTHETIC_VAL_NOTE)
@workers_option()
@exact_decode_option()
@json_file_option("json_path")
@click.option(
    "--confusion",
    "confusion_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the confusion matrix as PNG (and CSV beside it).",
)
@handle_errors
def main(
    model: Path,
    data: str,
    split: str,
    backend: str,
    device: str,
    batch_size: int,
    image_size: int | None,
    seed: int,
    synthetic_val_per_class: int | None,
    workers: int | None,
    decode: str,
    json_path: Path | None,
    confusion_path: Path | None,
) -> None:
    """Evaluate MODEL: a checkpoint (.pth/.safetensors) or an exported artifact (.onnx, .xml, .pt, .mlpackage).

    Images are preprocessed with the model's own spec (embedded in every checkpoint and artifact),
    and `--data synthetic` is the same deterministic validation set that training used. A folder
    whose classes are the model's in another order is evaluated with its labels mapped by name.

    \b
    Examples:
      alexnet-eval runs/demo/best.pth --data synthetic --json eval.json --confusion confusion.png
      alexnet-eval runs/demo/best.onnx --data synthetic          # the accuracy of what you ship
      alexnet-eval runs/demo/best.pth --json - | jq .top1        # JSON on stdout
      alexnet-eval runs/cifar/best.pth --data cifar10:~/data/cifar-10-batches-py
    """
    import runtime
    from alexnet.evaluate import evaluate, format_report
    from alexnet.metrics import format_confusion
    from runtime.outputs import is_stdout

    _check_outputs(json_path, confusion_path)  # before the long evaluation, not after it
    predictor = _with_image_size(runtime.load(model, backend=backend, device=device, decode=decode), image_size, model)
    echo_notice(predictor, model)
    meta = predictor.metadata
    class_names = list(meta.class_names)
    dataset = eval_dataset(model, meta, data, split, seed, synthetic_val_per_class)
    click.echo(
        f"{model} [{predictor.backend_name} on {predictor.device}] on {data} {split}: {len(dataset)} images, "
        f"input {meta.preprocess.crop}x{meta.preprocess.crop}",
        err=True,
    )
    report = evaluate(predictor.predict_logits, dataset, class_names, batch_size=batch_size, workers=workers)
    report.update({"model": str(model), "backend": predictor.backend_name, "data": data, "split": split})
    # The results are printed before any file is written: a failed write loses nothing on screen.
    echo = functools.partial(click.echo, err=is_stdout(json_path))  # stdout is the JSON's with --json -
    echo(format_report(report, class_names))
    echo(format_confusion(np.asarray(report["confusion_matrix"]), class_names))
    _write_outputs(report, class_names, json_path, confusion_path, echo)


def eval_dataset(
    model: Path, meta: ArtifactMetadata | Any, data: str, split: str, seed: int, val_per_class: int | None
) -> Any:
    """The `data` split, preprocessed as `meta` (artifact metadata or a Checkpoint) says and labelled
    with the model's class indices; seed and synthetic size default to the checkpoint's run."""
    from alexnet.data import load_eval_split
    from alexnet.evaluate import match_classes

    seed, val_per_class = _training_defaults(model, seed, val_per_class)
    extra = {"synthetic_val_per_class": val_per_class} if val_per_class else {}
    dataset, data_names = load_eval_split(data, split=split, preprocess=meta.preprocess, seed=seed, **extra)
    note = functools.partial(click.echo, err=True)
    return match_classes(dataset, list(data_names), list(meta.class_names), model=str(model), data=data, note=note)


def _check_outputs(json_path: Path | None, confusion_path: Path | None) -> None:
    """Usage errors (exit 2) for outputs that could not be written."""
    from runtime.outputs import OutputError, check_output_path

    try:
        if json_path is not None:
            check_output_path(json_path, what="--json", stdout_ok=True)
        if confusion_path is not None:
            if confusion_path.suffix.lower() == ".csv":
                raise click.UsageError(
                    f"--confusion takes the PNG's name; the CSV is written beside it (got {confusion_path})"
                )
            check_output_path(confusion_path, what="--confusion")
            check_output_path(confusion_path.with_suffix(".csv"), what="--confusion")
    except OutputError as exc:
        raise click.UsageError(str(exc)) from None


def _write_outputs(
    report: dict, class_names: list[str], json_path: Path | None, confusion_path: Path | None, echo: Any
) -> None:
    from runtime.outputs import dumps_json, is_stdout, write_text

    if json_path is not None:
        write_text(json_path, dumps_json(report, indent=2) + "\n", what="--json")
        if not is_stdout(json_path):
            echo(f"wrote {json_path}")
    if confusion_path is not None:
        from alexnet.plots import save_confusion

        save_confusion(np.asarray(report["confusion_matrix"]), class_names, confusion_path)
        csv_path = confusion_path.with_suffix(".csv")
        write_text(csv_path, _confusion_csv(report["confusion_matrix"], class_names), what="--confusion")
        echo(f"wrote {confusion_path} and {csv_path}")


def _with_image_size(predictor: Any, image_size: int | None, model: Path) -> Any:
    """The predictor at `image_size`: a checkpoint's AlexNet pools adaptively and takes any size
    above its minimum; an exported graph is fixed to the size it was exported with."""
    if image_size is None:
        return predictor
    import runtime
    from runtime.preprocess import PreprocessSpec

    meta = predictor.metadata
    if meta.format != "checkpoint":
        raise click.UsageError(
            f"--image-size applies to checkpoints only: {model} was exported for "
            f"{meta.preprocess.crop}x{meta.preprocess.crop} inputs (export it again with --image-size)"
        )
    minimum = getattr(getattr(predictor.backend, "model", None), "min_image_size", 1)
    if image_size < minimum:
        raise click.UsageError(
            f"--image-size {image_size} is too small for {model} "
            f"(AlexNet variant {meta.model_config.get('variant', '?')!r} needs at least {minimum})"
        )
    old = meta.preprocess
    spec = PreprocessSpec.for_image_size(image_size, mean=old.mean, std=old.std, interpolation=old.interpolation)
    metadata = dataclasses.replace(meta, preprocess=spec, input_shape=(meta.batch_size, 3, image_size, image_size))
    predictor.backend.configure(metadata)
    return runtime.Predictor(predictor.backend, metadata)
