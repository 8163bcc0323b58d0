"""The Core ML reference evaluator against PyTorch on every variant x input kind x precision.

    python -m benchmarks.coreml_reference [--variants cifar,paper,torchvision] [--images 4]

Untrained models at each variant's own input size (32, 227, 224 px; 5 classes) are exported to
Core ML in a temporary folder and run by `coreml-reference` on random-pixel images; per package:
max |logit difference|, that relative to the largest |logit|, top-1 agreement, and the seconds
per image. The README's Core ML figures come from this table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from runtime import formats
from runtime.options import command

VARIANT_SIZES = {"cifar": 32, "paper": 227, "torchvision": 224}
CLASSES = ["circle", "square", "triangle", "star", "cross"]


def _checkpoint(root: Path, variant: str, size: int) -> Path:
    from alexnet.checkpoint import Checkpoint, save_checkpoint
    from alexnet.model import AlexNet, AlexNetConfig
    from runtime.preprocess import PreprocessSpec

    torch.manual_seed(0)
    config = AlexNetConfig(variant=variant, num_classes=len(CLASSES))
    ckpt = Checkpoint(config, AlexNet(config).state_dict(), CLASSES, PreprocessSpec(resize=size, crop=size))
    return save_checkpoint(ckpt, root / f"{variant}.pth")


def _row(ckpt: Path, package: Path, images: int) -> tuple[float, float, float, float]:
    import runtime
    from alexnet.checkpoint import load_checkpoint
    from export.validate import reference_logits, validation_inputs

    with runtime.load(package, backend="coreml-reference") as predictor:
        batch = validation_inputs(predictor.metadata, None, random=images, images=0)
        start = time.perf_counter()
        got = predictor.predict_logits(batch)
        seconds = (time.perf_counter() - start) / len(batch)
    ref = reference_logits(load_checkpoint(ckpt), batch)
    error = float(np.abs(got - ref).max())
    return error, error / float(np.abs(ref).max()), float((got.argmax(1) == ref.argmax(1)).mean()), seconds


@command()
@click.option("--variants", default=",".join(VARIANT_SIZES), show_default=True, help="Comma-separated variants.")
@click.option("--images", default=4, show_default=True, type=click.IntRange(1, 64), help="Random images per package.")
def main(variants: str, images: int) -> None:
    """Export every input kind x precision of each variant and compare the evaluator with PyTorch."""
    from export import export_artifact

    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANT_SIZES]
    if unknown or not chosen:
        raise click.UsageError(f"--variants takes {', '.join(VARIANT_SIZES)} (got {variants!r})")
    click.echo(f"{'variant':<12}{'input':<8}{'precision':<10}{'max |d|':>10}{'rel':>10}{'top-1':>7}{'s/image':>9}")
    with tempfile.TemporaryDirectory(prefix="coreml-reference-") as scratch:
        for variant in chosen:
            ckpt = _checkpoint(Path(scratch), variant, VARIANT_SIZES[variant])
            for kind in ("image", "tensor"):
                for precision in formats.FORMATS["coreml"].precisions:
                    out = Path(scratch) / f"{variant}-{kind}-{precision}.mlpackage"
                    export_artifact(ckpt, "coreml", out, precision=precision, coreml_input=kind, echo=lambda _: None)
                    error, rel, top1, seconds = _row(ckpt, out, images)
                    click.echo(
                        f"{variant:<12}{kind:<8}{precision:<10}{error:>10.2e}{rel:>10.2e}{top1:>7.0%}{seconds:>9.3f}"
                    )


if __name__ == "__main__":
    main()
