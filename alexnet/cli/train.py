"""alexnet-train: train AlexNet on synthetic shapes, an image folder, CIFAR-10 or STL-10."""

from __future__ import annotations

import click

from alexnet.augment import AUGMENTATIONS
from alexnet.data import SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_VAL_PER_CLASS
from alexnet.model import VARIANTS
from alexnet.recipe import RECIPES, TrainArgs, TrainError, recipe_values, resolve_recipe
from runtime.cliutil import handle_errors
from runtime.options import (
    augment_options,
    batch_size_option,
    command,
    data_option,
    device_option,
    image_size_option,
    loader_workers_option,
    num_classes_option,
    out_dir_option,
    seed_option,
    synthetic_train_option,
    synthetic_val_option,
    variant_option,
)

_DEFAULTS = TrainArgs()  # every default below is TrainArgs' or a recipe's: written once, there


def _recipe_help() -> str:
    return "; ".join(
        f"{name}: {v['optimizer']} lr {v['lr']:g}, weight decay {v['weight_decay']:g}, {v['schedule']} schedule, "
        f"warm-up {v['warmup_epochs']:g} epoch, dropout {v['dropout']:g}, label smoothing {v['label_smoothing']:g}"
        for name, v in RECIPES.items()
    )


@command()
@data_option(default=_DEFAULTS.data)
@out_dir_option("Run folder.", default=_DEFAULTS.out)
@variant_option(VARIANTS, default=_DEFAULTS.variant)
@num_classes_option("Default: the dataset's.")
@image_size_option(
    "Default: the variant's (torchvision 224, paper 227, cifar 32); synthetic 64, CIFAR-10 32 and STL-10 96 "
    "keep theirs unless the variant's is smaller."
)
@augment_options(
    AUGMENTATIONS, "Default: none for synthetic, light for CIFAR-10 and inputs of 64 px or less, else standard."
)
@click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.epochs, show_default=True)
@batch_size_option("Per process.", default=_DEFAULTS.batch_size)
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPES)),
    default=_DEFAULTS.recipe,
    show_default=True,
    help=_recipe_help(),
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None, help="Override the recipe's.")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Peak learning rate. Recipe: {recipe_values('lr')}.",
)
@click.option(
    "--momentum",
    type=click.FloatRange(0, 1, max_open=True),
    default=_DEFAULTS.momentum,
    show_default=True,
    help="SGD momentum.",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Not on biases. Recipe: {recipe_values('weight_decay')}.",
)
@click.option(
    "--schedule",
    type=click.Choice(["cosine", "step"]),
    default=None,
    help=f"Recipe: {recipe_values('schedule')}.",
)
@click.option(
    "--warmup-epochs",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Linear warm-up. Recipe: {recipe_values('warmup_epochs')}.",
)
@click.option(
    "--step-size",
    type=click.IntRange(min=1),
    default=_DEFAULTS.step_size,
    show_default=True,
    help="Step schedule: epochs per decay.",
)
@click.option(
    "--gamma",
    type=click.FloatRange(0, 1, min_open=True),
    default=_DEFAULTS.gamma,
    show_default=True,
    help="Step schedule: decay factor.",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help=f"Recipe: {recipe_values('label_smoothing')}.",
)
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help=f"Recipe: {recipe_values('dropout')}."
)
@seed_option(default=_DEFAULTS.seed)
@loader_workers_option(default=_DEFAULTS.workers)
@device_option("auto: cuda, then mps, then cpu.", indexed=True, default=_DEFAULTS.device)
@click.option(
    "--amp",
    type=click.Choice(["none", "bf16", "fp16"]),
    default=_DEFAULTS.amp,
    show_default=True,
    help="Mixed precision (CUDA).",
)
@click.option("--channels-last", is_flag=True, help="NHWC memory format.")
@synthetic_train_option(f"Default: {SYNTHETIC_TRAIN_PER_CLASS}.")
@synthetic_val_option(f"Default: {SYNTHETIC_VAL_PER_CLASS}.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from OUT/last.pth.")
@handle_errors
def main(resume: str | None, **options) -> None:
    """Train AlexNet; writes OUT/last.pth, OUT/best.pth, OUT/metrics.jsonl and OUT/curves.png.

    \b
    Examples:
      alexnet-train --data synthetic --image-size 64 --epochs 4 --out runs/demo
      alexnet-train --data ~/data/digits --variant cifar --augment light --no-flip --out runs/digits   # 32 px
      alexnet-train --data cifar10:~/data/cifar-10-batches-py --variant cifar --epochs 30 --out runs/cifar
      alexnet-train --data ~/data/imagenet --recipe paper --epochs 90 --workers 8 --amp bf16 --out runs/in1k
      alexnet-train --out runs/demo --resume runs/demo/last.pth      # after a crash or Ctrl-C
      torchrun --nproc_per_node=2 -m alexnet.cli.train --data synthetic --out runs/ddp
    """
    from alexnet.train import train

    options["out"] = str(options["out"])  # TrainArgs keeps plain values (a checkpoint stores them as JSON)
    args = TrainArgs(**options)
    context = click.get_current_context()
    given = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    explicit = {name for name in options if context.get_parameter_source(name) in given}
    if args.amp != "none" and args.device in ("cpu", "mps"):
        raise click.UsageError(f"--amp {args.amp} needs a CUDA device")
    try:  # nan/inf get past click's ranges; train() checks again (API, --resume), this makes it a usage error
        resolve_recipe(TrainArgs(**options)).validate()
    except TrainError as exc:
        raise click.UsageError(str(exc)) from None
    train(args, resume=resume, echo=click.echo, explicit=explicit)  # its errors are DeployErrors: handle_errors


if __name__ == "__main__":  # torchrun -m alexnet.cli.train ... (the module is imported once, as __main__)
    main()
