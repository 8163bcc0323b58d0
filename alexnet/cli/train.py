"""alexnet-train: train AlexNet on synthetic shapes, an image folder, CIFAR-10 or STL-10."""

from __future__ import annotations

import click

from alexnet.model import VARIANTS
from alexnet.trainloop import RECIPES, TrainArgs, TrainError, resolve_recipe
from runtime.cliutil import handle_errors
from runtime.preprocess import MAX_CROP

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.command(context_settings=_CONTEXT)
@click.option("--data", default="synthetic", show_default=True, help="synthetic | DIR | cifar10:DIR | stl10:DIR")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--variant", type=click.Choice(VARIANTS), default="torchvision", show_default=True)
@click.option("--num-classes", type=click.IntRange(min=1), default=None, help="Default: the dataset's.")
@click.option(
    "--image-size",
    type=click.IntRange(min=8, max=MAX_CROP),
    default=None,
    help="Default: synthetic 64, CIFAR 32, STL 96, folders 224.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Per process.")
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPES)),
    default="default",
    show_default=True,
    help="default: AdamW, warmup + cosine. paper: SGD lr 0.01, momentum 0.9, wd 5e-4, step decay.",
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None, help="Override the recipe's.")
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate (recipe: default 4e-4, paper 0.01).",
)
@click.option(
    "--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True, help="SGD momentum."
)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None)
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default=None)
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None)
@click.option(
    "--step-size", type=click.IntRange(min=1), default=30, show_default=True, help="Step schedule: epochs per decay."
)
@click.option(
    "--gamma",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.1,
    show_default=True,
    help="Step schedule: decay factor.",
)
@click.option(
    "--label-smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Default: the recipe's (0.1; paper 0).",
)
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Default: the recipe's (0; paper 0.5)."
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes."
)
@click.option(
    "--device", default="auto", show_default=True, help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps"
)
@click.option(
    "--amp",
    type=click.Choice(["none", "bf16", "fp16"]),
    default="none",
    show_default=True,
    help="Mixed precision (CUDA).",
)
@click.option("--channels-last", is_flag=True, help="NHWC memory format.")
@click.option(
    "--synthetic-train-per-class",
    type=click.IntRange(min=1),
    default=None,
    envvar="ALEXNET_SYNTHETIC_TRAIN_PER_CLASS",
    help="Size of the synthetic set (default 500 per class; env ALEXNET_SYNTHETIC_TRAIN_PER_CLASS).",
)
@click.option(
    "--synthetic-val-per-class",
    type=click.IntRange(min=1),
    default=None,
    envvar="ALEXNET_SYNTHETIC_VAL_PER_CLASS",
    help="Synthetic validation images per class (default 50; env ALEXNET_SYNTHETIC_VAL_PER_CLASS).",
)
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from OUT/last.pth.")
@handle_errors
def main(resume: str | None, **options) -> None:
    """Train AlexNet; writes OUT/last.pth, OUT/best.pth, OUT/metrics.jsonl and OUT/curves.png.

    \b
    Examples:
      alexnet-train --data synthetic --image-size 64 --epochs 4 --out runs/demo
      alexnet-train --data cifar10:~/data/cifar-10-batches-py --variant cifar --epochs 30 --out runs/cifar
      alexnet-train --data ~/data/imagenet --recipe paper --epochs 90 --workers 8 --amp bf16 --out runs/in1k
      alexnet-train --out runs/demo --resume runs/demo/last.pth      # after a crash or Ctrl-C
      torchrun --nproc_per_node=2 -m alexnet.cli.train --data synthetic --out runs/ddp
    """
    from alexnet.train import train

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
