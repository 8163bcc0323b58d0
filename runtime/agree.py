"""Do several models (a checkpoint and its exports) predict the same on the same image files?

    python -m runtime.agree demo-out/run/best.pth demo-out/run/best.onnx demo-out/run/best.xml \
        demo-out/run/best.pt --images demo-out/images/val

The first model is the reference. Per model: the backend it ran on, how many images had the
same top-1 class as the reference, and the largest probability difference over every class.
Off macOS a .mlpackage runs on the Core ML reference evaluator (its backend column says
coreml-reference); a model that cannot run here gets a row that says why.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
import numpy as np

from runtime.cli import collect_images
from runtime.errors import DeployError, first_line
from runtime.options import command


def _probabilities(model: Path, images: list[str]) -> tuple[str, np.ndarray, np.ndarray, list[str], list[str]]:
    """Run `model` on every image: (backend name, probabilities (N, classes), which images it
    predicted, the failures' messages, the warnings it raised). Raises DeployError if it cannot run."""
    import runtime

    # Recorded, not printed: a model whose weights overflow makes numpy warn at every layer, lines
    # that would come between the table's rows; its row says how many and the first.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runtime.load(model) as predictor:
            predictions = predictor.predict(images, topk=1, logits=True)
            backend, classes = predictor.backend_name, predictor.metadata.num_classes
        ok = np.array([p.ok for p in predictions], dtype=bool)
        logits = np.array([p.logits if p.ok else [np.nan] * classes for p in predictions], dtype=np.float64)
        probs = np.full_like(logits, np.nan)
        probs[ok] = runtime.softmax(logits[ok])
    failures = [str(p.error) for p in predictions if not p.ok]
    return backend, probs, ok, failures, [first_line(w.message) for w in caught]  # type: ignore[arg-type]


def _note(failures: list[str], caught: list[str], total: int) -> str:
    """The end of a model's row: what failed and what it warned, one line."""
    parts = [f"failed on {len(failures)}/{total}: {failures[0]}"] if failures else []
    parts += [f"{len(caught)} warning(s): {caught[0]}"] if caught else []
    return "  " + "; ".join(parts) if parts else ""


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

    Exit status 1 when a model that ran disagrees with the reference on any top-1 class, or
    failed on any image (a non-finite output, say); a model that cannot run here is skipped.
    """
    images, _ = collect_images(image_dirs)
    if not images:
        raise click.UsageError("no images found")
    reference = reference_ok = None
    disagreements = 0
    click.echo(f"{'model':<36}{'backend':<18}{'top-1 same':>12}{'max |dp|':>11}")
    for model in models:
        try:
            backend, probs, ok, failures, caught = _probabilities(model, images)
        except DeployError as exc:
            click.echo(f"{str(model)[-35:]:<36}skipped: {first_line(exc)}")
            continue
        if reference is None:
            reference, reference_ok = probs, ok
        both = ok & reference_ok  # an image either model failed on is a disagreement
        same = int((probs[both].argmax(1) == reference[both].argmax(1)).sum())
        disagreements += len(images) - same
        diff = f"{np.abs(probs[both] - reference[both]).max():.2e}" if both.any() else "-"
        click.echo(
            f"{str(model)[-35:]:<36}{backend:<18}{f'{same}/{len(images)}':>12}{diff:>11}"
            + _note(failures, caught, len(images))
        )
    if reference is None:
        raise click.ClickException("no model could run here")
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
