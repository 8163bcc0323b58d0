"""`alexnet-export`: checkpoint -> TorchScript / ONNX / Core ML, validated by default."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from export.common import FORMATS, ExportError
from export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_GATE_SIZE,
    MAX_IMAGES,
    TARGET_CPUS,
    QuantizeOptions,
)
from runtime.cliutil import handle_errors
from runtime.metadata import PRECISIONS
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
    type=click.Choice(PRECISIONS),
    help="Weights/compute precision. Default: fp32, fp16 for Core ML. int8: calibrated and gated (ONNX), "
    "compressed weights (Core ML).",
)
@click.option(
    "--precisions",
    help="With --format all: a comma-separated list (e.g. fp32,int8); each format gets those that apply to it.",
)
@click.option(
    "--calibration",
    help="int8: calibration images (a folder, ImageFolder, synthetic, cifar10:DIR, stl10:DIR; labels unused, "
    "other classes are fine). Default: the checkpoint's training data.",
)
@click.option(
    "--calibration-size",
    type=click.IntRange(1, MAX_IMAGES),
    default=DEFAULT_CALIBRATION_SIZE,
    show_default=True,
    help="int8: calibration images to use.",
)
@click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default="minmax", show_default=True)
@click.option(
    "--gate-data",
    help="int8: held-out images for the accuracy gate (never calibration images). Default: the held-out "
    "split of the calibration data.",
)
@click.option("--gate-size", type=click.IntRange(1, MAX_IMAGES), default=DEFAULT_GATE_SIZE, show_default=True)
@click.option(
    "--max-agreement-loss",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="int8 gate: top-1 agreement with fp32 must be at least 1 minus this.",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="int8 gate: labelled gate images may lose at most this much top-1 accuracy (0.01 = 1 point).",
)
@click.option(
    "--target-cpu",
    type=click.Choice(TARGET_CPUS),
    default="auto",
    show_default=True,
    help="int8: the CPU the model will run on (auto: this one); picks onnxruntime's recommended types.",
)
@click.option(
    "--max-fp32-layers",
    type=click.IntRange(min=0),
    help="int8: keep at most this many layers in fp32 when the gate fails (default: as many as it takes; "
    "0: no fallback).",
)
@click.option("--force", is_flag=True, help="int8: write the model even when it fails the gate (recorded in it).")
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
    precisions: str | None,
    calibration: str | None,
    calibration_size: int,
    calibration_method: str,
    gate_data: str | None,
    gate_size: int,
    max_agreement_loss: float,
    max_accuracy_drop: float,
    target_cpu: str,
    max_fp32_layers: int | None,
    force: bool,
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
      alexnet-export --format onnx --precision int8 runs/best.pth  # runs/best-int8.onnx, gated
      alexnet-export --format onnx --precision int8 runs/best.pth --calibration photos/ --gate-data held-out/
      alexnet-export --format all --precisions fp32,int8 runs/best.pth -o artifacts/

    Validation (on by default) loads the artifact back and compares its logits with the
    PyTorch model on random and preprocessed images; a failure exits with status 1 and
    keeps the artifact. Core ML defaults to fp16 and an RGB image input (batch 1,
    normalization inside the model); it predicts only on macOS, so elsewhere validation
    checks the package's inputs, outputs, labels, metadata and weights.

    int8 ONNX is calibrated (static QDQ, per-channel weights, types for --target-cpu) and must
    pass the accuracy gate on held-out images: top-1 agreement with fp32 and, where the images
    have labels, the accuracy drop. When it fails, the most sensitive layers stay fp32 one at a
    time; if nothing passes, the command exits 1 and writes nothing (unless --force).
    """
    if batch_size is not None and dynamic_batch:
        raise click.UsageError("--batch and --dynamic-batch exclude each other")
    formats = FORMATS if fmt == "all" else (fmt,)
    jobs = _jobs(formats, precision, precisions)
    if "coreml" in formats and coreml_input == "image" and batch_size not in (None, 1):
        raise click.UsageError(
            "a Core ML image input takes one image at a time; add --coreml-input tensor to use --batch"
        )
    if fmt == "all" and output is not None and not output.is_dir():
        raise click.UsageError(f"with --format all, -o must be an existing directory (got {output})")
    if len(jobs) > 1 and output is not None and not output.is_dir():
        raise click.UsageError(f"with several precisions, -o must be an existing directory (got {output})")
    if not Path(checkpoint).exists():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    quantize = QuantizeOptions(
        calibration=calibration,
        calibration_size=calibration_size,
        method=calibration_method,
        gate_data=gate_data,
        gate_size=gate_size,
        max_agreement_loss=max_agreement_loss,
        max_accuracy_drop=max_accuracy_drop,
        target_cpu=target_cpu,
        max_fp32_layers=max_fp32_layers,
        force=force,
    )
    _check_before_writing(checkpoint, jobs, output, None if no_validate else data)
    settings = {
        "batch_size": batch_size,
        "opset": opset,
        "image_size": image_size,
        "coreml_input": coreml_input,
        "quantize": quantize,
        "echo": click.echo,
    }
    checks = {"no_validate": no_validate, "atol": atol, "data": data}
    rows, failed = [], []
    for job in jobs:
        row = _export_one(checkpoint, job, output, settings, checks)
        rows.append(row[:-1])
        if not row[-1]:
            failed.append(row[-2])
    if len(rows) > 1:
        _table(("format", "precision", "size", "agreement", "accuracy", "check", "artifact"), rows)
    if failed:
        click.echo(
            f"Error: validation failed for {', '.join(map(str, failed))} (artifact kept; see the numbers above)",
            err=True,
        )
        sys.exit(1)


def _jobs(formats: tuple[str, ...], precision: str | None, precisions: str | None) -> list[tuple[str, str, str | None]]:
    """(format, precision, name tag) of each artifact: --precision for every format, or each of
    --precisions that applies. int8 artifacts are always tagged (best-int8.onnx beside best.onnx)."""
    from export.common import applies, default_precision

    if precision and precisions:
        raise click.UsageError("--precision and --precisions exclude each other")
    if precisions is None:
        chosen = [(name, precision or default_precision(name)) for name in formats]
        return [(name, p, "int8" if p == "int8" else None) for name, p in chosen]
    asked = [p.strip() for p in precisions.split(",") if p.strip()]
    unknown = [p for p in asked if p not in PRECISIONS]
    if unknown or not asked:
        raise click.UsageError(f"--precisions takes a list of {', '.join(PRECISIONS)} (got {precisions!r})")
    jobs = [(name, p) for name in formats for p in dict.fromkeys(asked) if applies(name, p)]
    if not jobs:
        raise click.UsageError(f"none of {precisions} applies to {', '.join(formats)}")
    # Several precisions of one format need several names: a non-default one is tagged (best-fp16.onnx).
    return [(name, p, p if p != default_precision(name) else None) for name, p in jobs]


def _export_one(checkpoint: Path, job: tuple, output: Path | None, settings: dict, checks: dict) -> tuple:
    """Export and check one artifact; its table row, its path, then whether it passed."""
    from export import export_artifact
    from export.validate import validate_artifact

    name, chosen, tag = job
    if name == "onnx" and chosen == "fp16":
        click.echo(
            "warning: fp16 ONNX runs slower than fp32 on CPUs (onnxruntime's CPU provider casts most fp16 ops "
            "back to fp32); it is meant for GPUs and the Core ML execution provider",
            err=True,
        )
    start = time.perf_counter()
    path = export_artifact(checkpoint, name, output, precision=chosen, tag=tag, **settings)
    click.echo(f"wrote {path} ({name}, {chosen}, {time.perf_counter() - start:.1f} s)")
    agreement = accuracy = "-"
    verdict, passed = "skipped", True
    if name == "onnx" and chosen == "int8":
        gate = _gate_record(path)
        verdict = "gate PASS" if gate.get("passed") else "gate FAIL (forced)"
        agreement = f"{gate.get('agreement', 0):.2%}"
        if gate.get("accuracy_int8") is not None:
            accuracy = f"{gate['accuracy_int8']:.2%} (fp32 {gate['accuracy_fp32']:.2%})"
    elif not checks["no_validate"]:
        result = validate_artifact(path, checkpoint, atol=checks["atol"], data=checks["data"])
        click.echo(f"  {result.summary()}")
        verdict, passed = ("PASS" if result.passed else "FAIL"), result.passed
        agreement = "-" if result.top1 is None else f"{result.top1:.2%}"
    return name, chosen, _size(path), agreement, accuracy, verdict, str(path), path, passed


def _gate_record(path: Path) -> dict:
    import runtime

    with runtime.load(path, backend="onnxruntime", device="cpu") as predictor:
        return dict((predictor.metadata.quantization or {}).get("gate") or {})


def _size(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return f"{size / 1e6:.1f} MB"


def _check_before_writing(checkpoint: Path, jobs: list[tuple], output: Path | None, data: Path | None) -> None:
    """Every output place and the --data images, checked before the first artifact replaces an old one."""
    from export import common

    for name, _, tag in jobs:
        common.check_output(common.resolve_output(checkpoint, name, output, tag), name, checkpoint)
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
