"""alexnet-info: the layer summary of a variant or a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from alexnet.checkpoint import Checkpoint, load_checkpoint
from alexnet.model import VARIANTS, AlexNet, AlexNetConfig, InputTooSmallError
from alexnet.summary import ModelSummary, summarize
from runtime.cliutil import handle_errors
from runtime.options import command, image_size_option, json_flag_option, num_classes_option, variant_option


def model_and_summary(
    checkpoint: str | None, variant: str | None, num_classes: int | None, image_size: int | None
) -> tuple[AlexNet, ModelSummary, Checkpoint | None]:
    """The model a command describes (a checkpoint's, or a fresh --variant/--num-classes one) and its
    layer summary at `image_size` (default: the checkpoint's crop or the variant's size)."""
    ckpt = None
    if checkpoint is not None:
        if variant or num_classes:
            raise click.UsageError("--variant/--num-classes describe a new model; a checkpoint brings its own")
        ckpt = load_checkpoint(checkpoint)
        model = ckpt.build_model()
        image_size = image_size or ckpt.preprocess.crop
    else:
        model = AlexNet(AlexNetConfig(variant=variant or "torchvision", num_classes=num_classes or 1000))
    try:
        return model, summarize(model, image_size), ckpt
    except InputTooSmallError as exc:
        raise click.UsageError(str(exc)) from None


def model_arguments(func: Callable) -> Callable:
    """[CHECKPOINT] --variant --num-classes --image-size: what `model_and_summary` takes."""
    for decorator in (
        image_size_option("Default: the variant's or checkpoint's."),
        num_classes_option("Default: 1000."),
        variant_option(VARIANTS, "Default: torchvision."),
        click.argument("checkpoint", required=False, type=click.Path(dir_okay=False)),
    ):
        func = decorator(func)
    return func


@command()
@model_arguments
@json_flag_option("Print the summary as JSON.")
@handle_errors
def main(
    checkpoint: str | None, variant: str | None, num_classes: int | None, image_size: int | None, as_json: bool
) -> None:
    """Print AlexNet's layers: output shape, parameters and multiply-accumulates.

    \b
    Examples:
      alexnet-info                                   # torchvision layout, 1000 classes, 224x224
      alexnet-info --variant paper --num-classes 10  # the 2012 paper's network
      alexnet-info runs/demo/best.pth                # what a checkpoint holds
    """
    _, summary, ckpt = model_and_summary(checkpoint, variant, num_classes, image_size)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    if checkpoint is not None:
        click.echo(
            f"checkpoint: {checkpoint} ({len(ckpt.class_names)} classes: {', '.join(ckpt.class_names[:5])}"
            f"{', ...' if len(ckpt.class_names) > 5 else ''}; preprocess resize={ckpt.preprocess.resize} crop={ckpt.preprocess.crop})"
        )
    click.echo(summary.format_table())
