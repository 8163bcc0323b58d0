"""`alexnet-export`: checkpoint -> TorchScript / ONNX / Core ML, validated by default."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from export.common import FORMATS, ExportError
from runtime.cliutil import handle_errors
from runtime.preprocess import MAX_CROP


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS + ("all",)), required=True, help="Artifact format, or all of them."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output file, or a directory to write into (required to be one with --format all). Default: beside the checkpoint.",
)
@click.option("--batch", "batch_size", type=click.IntRange(min=1), help="Fixed batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Any batch size (the default).")
@click.option(
    "--opset",
    type=click.IntRange(min=7),
    default=18,
    show_default=True,
    help="ONNX opset (the dynamo exporter writes 18 or newer).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16"]),
    help="Weights/compute precision. Default: fp32, fp16 for Core ML.",
)
@click.option(
    "--image-size", type=click.IntRange(min=1, max=MAX_CROP), help="Input size. Default: the checkpoint's crop size."
)
@click.option(
    "--coreml-input",
    type=click.Choice(["image", "tensor"]),
    default="image",
    show_default=True,
    help="Core ML input: an RGB image (normalization inside) or a normalized float tensor.",
)
@click.option("--no-validate", is_flag=True, help="Skip loading the artifact back and comparing it with PyTorch.")
@click.option(
    "--atol", type=click.FloatRange(min=0), help="Logit tolerance. Default: 1e-4 (fp32), 1e-2 x logit scale (fp16)."
)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Validate on these images instead of synthetic ones.",
)
@handle_errors
def main(
    checkpoint: Path,
    fmt: str,
    output: Path | None,
    batch_size: int | None,
    dynamic_batch: bool,
    opset: int,
    precision: str | None,
    image_size: int | None,
    coreml_input: str,
    no_validate: bool,
    atol: float | None,
    data: Path | None,
) -> None:
    """Export CHECKPOINT (.pth / .safetensors) to a deployable artifact.

    \b
    Examples:
      alexnet-export --format onnx runs/best.pth                 # runs/best.onnx, dynamic batch
      alexnet-export --format torchscript runs/best.pth --batch 8 -o model.pt
      alexnet-export --format coreml runs/best.pth --precision fp32 --coreml-input tensor
      alexnet-export --format all runs/best.pth -o artifacts/    # every format, then a table
      alexnet-export --format onnx runs/best.pth --data photos/ --atol 1e-3

    Validation (on by default) loads the artifact back and compares its logits with the
    PyTorch model on random and preprocessed images; a failure exits with status 1 and
    keeps the artifact. Core ML defaults to fp16 and an RGB image input (batch 1,
    normalization inside the model); it predicts only on macOS, so elsewhere validation
    checks the package's inputs, outputs, labels, metadata and weights.
    """
    from export import export_artifact
    from export.validate import validate_artifact

    if batch_size is not None and dynamic_batch:
        raise click.UsageError("--batch and --dynamic-batch exclude each other")
    formats = FORMATS if fmt == "all" else (fmt,)
    if "coreml" in formats and coreml_input == "image" and batch_size not in (None, 1):
        raise click.UsageError(
            "a Core ML image input takes one image at a time; add --coreml-input tensor to use --batch"
        )
    if fmt == "all" and output is not None and not output.is_dir():
        raise click.UsageError(f"with --format all, -o must be an existing directory (got {output})")
    if not Path(checkpoint).exists():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    _check_before_writing(checkpoint, formats, output, None if no_validate else data)
    rows, failed = [], []
    for name in formats:
        chosen = precision or ("fp16" if name == "coreml" else "fp32")
        start = time.perf_counter()
        path = export_artifact(
            checkpoint,
            name,
            output,
            batch_size=batch_size,
            opset=opset,
            precision=chosen,
            image_size=image_size,
            coreml_input=coreml_input,
        )
        seconds = time.perf_counter() - start
        click.echo(f"wrote {path} ({name}, {chosen}, {seconds:.1f} s)")
        verdict = "skipped"
        if not no_validate:
            result = validate_artifact(path, checkpoint, atol=atol, data=data)
            click.echo(f"  {result.summary()}")
            verdict = "PASS" if result.passed else "FAIL"
            if not result.passed:
                failed.append(path)
        rows.append((name, chosen, f"{seconds:.1f}s", verdict, str(path)))
    if len(rows) > 1:
        _table(("format", "precision", "export", "validation", "artifact"), rows)
    if failed:
        click.echo(
            f"Error: validation failed for {', '.join(map(str, failed))} (artifact kept; see the numbers above)",
            err=True,
        )
        sys.exit(1)


def _check_before_writing(checkpoint: Path, formats: tuple[str, ...], output: Path | None, data: Path | None) -> None:
    """Every output place and the --data images, checked before the first artifact replaces an old one."""
    from export import common

    for name in formats:
        common.check_output(common.resolve_output(checkpoint, name, output), name, checkpoint)
    if data is not None:
        from export.validate import validation_inputs
        from runtime.metadata import ArtifactMetadata
        from runtime.preprocess import PreprocessSpec

        # Validation reads these images only after the export; read the same ones now (at a
        # tiny size: only whether they load matters here).
        probe = ArtifactMetadata(
            class_names=(), preprocess=PreprocessSpec(resize=8, crop=8), model_config={}, input_shape=(None, 3, 8, 8)
        )
        validation_inputs(probe, data, random=0)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
