"""alexnet-info: the layer summary of a variant or a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from alexnet.augment import AUGMENTATIONS, describe_augment
from alexnet.checkpoint import Checkpoint, load_checkpoint
from alexnet.model import VARIANTS, AlexNet, AlexNetConfig, InputTooSmallError
from alexnet.summary import ModelSummary, summarize
from runtime.cliutil import handle_errors
from runtime.options import command, image_size_option, json_flag_option, num_classes_option, variant_option
from runtime.preprocess import short_repr


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
    trained = training_summary(ckpt) if ckpt is not None else None
    if as_json:
        click.echo(json.dumps(summary.to_dict() | ({"training": trained} if trained else {}), indent=2))
        return
    if checkpoint is not None:
        click.echo(
            f"checkpoint: {checkpoint} ({len(ckpt.class_names)} classes: {', '.join(ckpt.class_names[:5])}"
            f"{', ...' if len(ckpt.class_names) > 5 else ''}; preprocess resize={ckpt.preprocess.resize} crop={ckpt.preprocess.crop})"
        )
    if trained:
        augment = describe_augment(trained["augment"], trained["flip"]) if trained["augment"] else "not recorded"
        size = trained["image_size"]
        click.echo(
            f"trained: {trained['data']}, {size}x{size}, augment {augment}, "
            f"{trained['epochs']} epochs, recipe {trained['recipe']}"
        )
    click.echo(summary.format_table())


def training_summary(ckpt: Checkpoint) -> dict | None:
    """What the run was trained with, from the checkpoint's training section (None for a weights-only file).

    A checkpoint from before --augment records none (None here); its size is the preprocessing's crop."""
    stored = ckpt.training.get("args") if isinstance(ckpt.training, dict) else None
    if not isinstance(stored, dict):
        return None
    trained = {key: _plain(stored.get(key)) for key in ("data", "epochs", "recipe")}
    augment = stored.get("augment")
    return trained | {
        "image_size": ckpt.preprocess.crop,  # what the checkpoint's preprocessing feeds it (checked on load)
        "augment": augment if isinstance(augment, str) and augment in AUGMENTATIONS else None,
        "flip": stored.get("flip") is not False,
    }


def _plain(value: object) -> object:
    """A stored (untrusted) value as is when it is a short string or a number, else its shortened repr."""
    if isinstance(value, str) and len(value) <= 200 or isinstance(value, int) and not isinstance(value, bool):
        return value
    return short_repr(value, 80)
