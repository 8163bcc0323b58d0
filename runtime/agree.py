"""Do several models (a checkpoint and its exports) predict the same on the same image files?

    python -m runtime.agree demo-out/run/best.pth demo-out/run/best.onnx demo-out/run/best.pt \
        --images demo-out/images/val

The first model is the reference. Per model: the backend it ran on, how many images had the
same top-1 class as the reference, and the largest probability difference over every class.
Off macOS a .mlpackage runs on the Core ML reference evaluator (its backend column says
coreml-reference); a model that cannot run here gets a row that says why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from runtime.cli import collect_images
from runtime.errors import DeployError, first_line
from runtime.options import command


def _probabilities(model: Path, images: list[str]) -> tuple[str, np.ndarray]:
    """(backend name, probabilities (N, classes)) for every image; raises DeployError if it cannot run."""
    import runtime

    with runtime.load(model) as predictor:
        predictions = predictor.predict(images, topk=1, logits=True)
        failed = [p for p in predictions if not p.ok]
        if failed:
            raise DeployError(f"{failed[0].source}: {failed[0].error}")
        logits = np.array([p.logits for p in predictions], dtype=np.float64)
        return predictor.backend_name, runtime.softmax(logits)


@command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--images",
    "image_dirs",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Image files or folders (walked).",
)
def main(models: tuple[Path, ...], image_dirs: tuple[str, ...]) -> None:
    """Compare MODELS' predictions on the same images; the first model is the reference.

    Exit status 1 when a model that ran disagrees with the reference on any top-1 class.
    """
    images, _ = collect_images(image_dirs)
    if not images:
        raise click.UsageError("no images found")
    reference = None
    disagreements = 0
    click.echo(f"{'model':<36}{'backend':<13}{'top-1 same':>12}{'max |dp|':>11}")
    for model in models:
        try:
            backend, probs = _probabilities(model, images)
        except DeployError as exc:
            click.echo(f"{str(model)[-35:]:<36}skipped: {first_line(exc)}")
            continue
        if reference is None:
            reference = probs
        same = int((probs.argmax(1) == reference.argmax(1)).sum())
        disagreements += len(images) - same
        click.echo(
            f"{str(model)[-35:]:<36}{backend:<13}{f'{same}/{len(images)}':>12}{np.abs(probs - reference).max():>11.2e}"
        )
    if reference is None:
        raise click.ClickException("no model could run here")
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
