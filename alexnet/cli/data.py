"""alexnet-data: write the synthetic set to disk, or inspect any data source."""

from __future__ import annotations

from pathlib import Path

import click

from alexnet.data import load_data
from alexnet.synthetic import SYNTHETIC_CLASSES, write_synthetic_imagefolder
from runtime.cliutil import handle_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Datasets for alexnet-deploy.

    \b
    Examples:
      alexnet-data synthetic --out data/shapes --per-class 100
      alexnet-data inspect data/shapes
      alexnet-data inspect cifar10:~/data/cifar-10-batches-py
    """


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write (created).")
@click.option("--per-class", required=True, type=click.IntRange(min=1), help="Training images per class.")
@click.option("--val-per-class", type=click.IntRange(min=0), default=None, help="Validation images per class (default: per-class / 4).")
@click.option("--image-size", type=click.IntRange(min=8), default=64, show_default=True, help="Side of the square images in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same images.")
@handle_errors
def synthetic(out_dir: Path, per_class: int, val_per_class: int | None, image_size: int, seed: int) -> None:
    """Write the synthetic shapes set as an ImageFolder (OUT/train/<class>, OUT/val/<class>).

    \b
    Example:
      alexnet-data synthetic --out data/shapes --per-class 100 --image-size 96
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise click.UsageError(f"--out {out_dir} exists and is not a folder")
    try:
        counts = write_synthetic_imagefolder(out_dir, per_class=per_class, image_size=image_size, seed=seed,
                                             val_per_class=val_per_class, progress=True)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    click.echo(f"wrote {counts['train']} train and {counts['val']} val images of {len(SYNTHETIC_CLASSES)} classes "
               f"({image_size}x{image_size}) to {out_dir}")


@main.command()
@click.argument("data")
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="Model input size (default: the source's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic set and of folder splits.")
@handle_errors
def inspect(data: str, image_size: int | None, seed: int) -> None:
    """Show a data source: classes, images per split, preprocessing.

    DATA is `synthetic`, a folder, `cifar10:DIR` or `stl10:DIR`.
    """
    bundle = load_data(data, image_size=image_size, seed=seed)
    click.echo(f"source: {bundle.name}")
    click.echo(f"classes ({len(bundle.class_names)}): {', '.join(bundle.class_names)}")
    for split, dataset in (("train", bundle.train), ("val", bundle.val)):
        per_class = [0] * len(bundle.class_names)
        for label in dataset.labels:
            per_class[label] += 1
        click.echo(f"{split}: {len(dataset)} images ({min(per_class)}-{max(per_class)} per class)")
    spec = bundle.preprocess
    click.echo(f"preprocess: resize {spec.resize}, crop {spec.crop}, {spec.interpolation}, mean {spec.mean}, std {spec.std}")
