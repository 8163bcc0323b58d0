"""alexnet-data: write the synthetic set to disk, or inspect any data source."""

from __future__ import annotations

from pathlib import Path

import click

from alexnet.augment import describe_augment
from alexnet.data import SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_VAL_PER_CLASS, load_data, size_notice
from alexnet.input_size import VARIANTS
from alexnet.synthetic import SYNTHETIC_CLASSES, write_synthetic_imagefolder
from runtime.cliutil import handle_errors
from runtime.options import (
    group,
    image_size_option,
    out_dir_option,
    seed_option,
    synthetic_train_option,
    synthetic_val_option,
    variant_option,
)


@group()
def main() -> None:
    """Datasets for alexnet-deploy.

    Nothing is downloaded: `synthetic` is generated on the fly (8 shape classes,
    deterministic by seed); folders, CIFAR-10 and STL-10 are read from local files.

    \b
    Examples:
      alexnet-data synthetic --out data/shapes --per-class 100
      alexnet-data inspect synthetic
      alexnet-data inspect data/shapes
      alexnet-data inspect cifar10:~/data/cifar-10-batches-py
    """


@main.command()
@out_dir_option("Folder to write (created).", required=True, name="out_dir")
@click.option("--per-class", required=True, type=click.IntRange(min=1), help="Training images per class.")
@click.option(
    "--val-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Validation images per class (default: per-class / 4, at least 1).",
)
@image_size_option("Of the images written.", default=64)
@seed_option("Same seed, same images.")
@handle_errors
def synthetic(out_dir: Path, per_class: int, val_per_class: int | None, image_size: int, seed: int) -> None:
    """Write the synthetic shapes set as an ImageFolder (OUT/train/<class>, OUT/val/<class>).

    \b
    Example:
      alexnet-data synthetic --out data/shapes --per-class 100 --image-size 96
    """
    # Writing over an earlier set would mix old and new images (and counts); refuse instead.
    if any((out_dir / split).is_dir() and any((out_dir / split).iterdir()) for split in ("train", "val")):
        raise click.UsageError(
            f"--out {out_dir} already holds a data set (train/ or val/); choose an empty or new folder"
        )
    try:
        counts = write_synthetic_imagefolder(
            out_dir, per_class=per_class, image_size=image_size, seed=seed, val_per_class=val_per_class, progress=True
        )
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    click.echo(
        f"wrote {counts['train']} train and {counts['val']} val images of {len(SYNTHETIC_CLASSES)} classes "
        f"({image_size}x{image_size}) to {out_dir}"
    )


@main.command()
@click.argument("data")
@variant_option(VARIANTS, "Its input size is the default --image-size, as in alexnet-train.", default="torchvision")
@image_size_option("Model input. Default: as alexnet-train's.")
@seed_option("Of the synthetic set and of folder splits.")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each class held out, for folders without train/ and val/.",
)
@synthetic_train_option(default=SYNTHETIC_TRAIN_PER_CLASS)
@synthetic_val_option(default=SYNTHETIC_VAL_PER_CLASS)
@handle_errors
def inspect(
    data: str,
    variant: str,
    image_size: int | None,
    seed: int,
    val_fraction: float,
    synthetic_train_per_class: int,
    synthetic_val_per_class: int,
) -> None:
    """Show a data source: classes, images per split, preprocessing.

    DATA is `synthetic`, a folder (DIR/train/<class>, DIR/val/<class>, or DIR/<class>),
    `cifar10:DIR` (cifar-10-batches-py) or `stl10:DIR` (stl10_binary).

    \b
    Examples:
      alexnet-data inspect synthetic --image-size 96
      alexnet-data inspect ~/data/flowers --val-fraction 0.1
      alexnet-data inspect stl10:~/data/stl10_binary
      alexnet-data inspect ~/data/digits --variant cifar        # at 32 px, the cifar variant's size
    """
    bundle = load_data(
        data,
        image_size=image_size,
        variant=variant,
        seed=seed,
        val_fraction=val_fraction,
        synthetic_train_per_class=synthetic_train_per_class,
        synthetic_val_per_class=synthetic_val_per_class,
    )
    click.echo(f"source: {bundle.name}")
    click.echo(f"classes ({len(bundle.class_names)}): {', '.join(bundle.class_names)}")
    for split, dataset in (("train", bundle.train), ("val", bundle.val)):
        per_class = [0] * len(bundle.class_names)
        for label in dataset.labels:
            per_class[label] += 1
        click.echo(f"{split}: {len(dataset)} images ({min(per_class)}-{max(per_class)} per class)")
    spec = bundle.preprocess
    click.echo(
        f"preprocess: resize {spec.resize}, crop {spec.crop}, {spec.interpolation}, mean {spec.mean}, std {spec.std}"
    )
    click.echo(f"train augmentation (default): {describe_augment(bundle.augment, bundle.flip)}")
    notice = size_notice(bundle, data)
    if notice:
        click.echo(notice)
