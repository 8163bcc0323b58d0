"""alexnet-eval: accuracy, per-class metrics and the confusion matrix of a checkpoint or exported model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import numpy as np

from runtime.cliutil import handle_errors


def _write_text(path: Path, text: str) -> None:
    from alexnet.checkpoint import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


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


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", default="synthetic", show_default=True, help="synthetic | DIR | cifar10:DIR | stl10:DIR")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--backend", default="auto", show_default=True, help="Runtime backend for MODEL (auto: from the file).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="Override the model's input size (checkpoints only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic set / folder split (as in training).")
@click.option("--synthetic-val-per-class", type=click.IntRange(min=1), default=None, envvar="ALEXNET_SYNTHETIC_VAL_PER_CLASS",
              help="Synthetic validation images per class, as in training (default 50).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write every number as JSON.")
@click.option("--confusion", "confusion_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the confusion matrix as PNG (and CSV beside it).")
@handle_errors
def main(model: Path, data: str, split: str, backend: str, device: str, batch_size: int, image_size: int | None,
         seed: int, synthetic_val_per_class: int | None, workers: int, json_path: Path | None, confusion_path: Path | None) -> None:
    """Evaluate MODEL: a checkpoint (.pth/.safetensors) or an exported .onnx, .pt or .mlpackage.

    Images are preprocessed with the model's own spec (embedded in every checkpoint and artifact),
    and `--data synthetic` is the same deterministic validation set that training used.

    \b
    Examples:
      alexnet-eval runs/demo/best.pth --data synthetic --json eval.json --confusion confusion.png
      alexnet-eval runs/demo/best.onnx --data synthetic          # the accuracy of what you ship
      alexnet-eval runs/cifar/best.pth --data cifar10:~/data/cifar-10-batches-py
    """
    import runtime
    from alexnet.data import load_eval_split
    from alexnet.evaluate import evaluate, format_report
    from alexnet.metrics import format_confusion

    for target in (json_path, confusion_path):
        if target is not None and not target.parent.is_dir():
            raise click.UsageError(f"folder {target.parent} does not exist")
    spec = None
    if image_size is not None:
        from runtime.preprocess import PreprocessSpec

        spec = PreprocessSpec.for_image_size(image_size)
    seed, synthetic_val_per_class = _training_defaults(model, seed, synthetic_val_per_class)
    predictor = runtime.load(model, backend=backend, device=device, preprocess=spec)
    meta = predictor.metadata
    extra = {"synthetic_val_per_class": synthetic_val_per_class} if synthetic_val_per_class else {}
    dataset, class_names = load_eval_split(data, split=split, preprocess=meta.preprocess, seed=seed, **extra)
    if list(class_names) != list(meta.class_names):
        raise click.ClickException(f"{model} was trained on {len(meta.class_names)} classes ({', '.join(meta.class_names[:4])}, ...) "
                                   f"but {data} has {len(class_names)} ({', '.join(class_names[:4])}, ...)")
    click.echo(f"{model} [{predictor.backend_name} on {predictor.device}] on {data} {split}: {len(dataset)} images, "
               f"input {meta.preprocess.crop}x{meta.preprocess.crop}", err=True)
    report = evaluate(predictor.predict_logits, dataset, list(class_names), batch_size=batch_size, workers=workers)
    report.update({"model": str(model), "backend": predictor.backend_name, "data": data, "split": split})
    click.echo(format_report(report, list(class_names)))
    click.echo(format_confusion(np.asarray(report["confusion_matrix"]), list(class_names)))
    if json_path is not None:
        _write_text(json_path, json.dumps(report, indent=2))
        click.echo(f"wrote {json_path}")
    if confusion_path is not None:
        from alexnet.plots import save_confusion

        save_confusion(np.asarray(report["confusion_matrix"]), list(class_names), confusion_path)
        csv_path = confusion_path.with_suffix(".csv")
        _write_text(csv_path, _confusion_csv(report["confusion_matrix"], list(class_names)))
        click.echo(f"wrote {confusion_path} and {csv_path}")
