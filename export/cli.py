"""`alexnet-export`: checkpoint -> an artifact of each format in the format table (runtime/formats.py); validated by default."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from export import cli_jobs
from export.common import FORMATS, ExportError
from export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_GATE_SIZE,
    MAX_IMAGES,
    TARGET_CPUS,
    QuantizeOptions,
)
from export.to_triton import DEFAULT_MAX_BATCH, DEFAULT_NAME, check_name
from runtime import formats
from runtime.cliutil import handle_errors
from runtime.formats import PRECISIONS
from runtime.options import (
    calibration_option,
    command,
    image_size_option,
    json_flag_option,
    output_option,
    precisions_option,
)


def _triton_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_name(value)
    except ExportError as exc:
        raise click.BadParameter(str(exc)) from None


def _format_help() -> str:
    on_its_own = [f"{f.name} ({f.title})" for f in formats.FORMATS.values() if not f.in_all]
    return (
        f"Artifact format (--list-formats: what each is), or all: {', '.join(FORMATS)} side by side, each "
        f"one whose export extra is installed; {', '.join(on_its_own)} only on its own. openvino keeps fp32 "
        "weights in fp32 (no fp16 compression)."
    )


def _list_formats(ctx: click.Context, as_json: bool) -> None:
    click.echo(formats.to_json() if as_json else formats.text_table())
    ctx.exit(0)


@command()
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("--format", "fmt", type=click.Choice(formats.names() + ("all",)), help=_format_help())
@click.option(
    "--list-formats", is_flag=True, help="Print the formats (suffix, precisions, backend, extras, metadata); exit."
)
@json_flag_option("With --list-formats: as JSON.")
@output_option(
    "Output file, or a directory to write into (required to be one with --format all); triton: the "
    "repository root (created if missing). Default: beside the checkpoint."
)
@click.option(
    "--batch",
    "batch_size",
    type=click.IntRange(min=1),
    help=f"Fixed batch size. Default: any batch size (triton: batched by Triton, up to {DEFAULT_MAX_BATCH}).",
)
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
    help="Weights/compute precision. Default: each format's first in --list-formats (Core ML: fp16). int8: "
    "calibrated and gated (ONNX, OpenVINO), compressed weights (Core ML).",
)
@precisions_option(
    "With --format all: a comma-separated list (e.g. fp32,int8); each format gets those that apply to it."
)
@calibration_option()
@click.option(
    "--calibration-size",
    type=click.IntRange(1, MAX_IMAGES),
    default=DEFAULT_CALIBRATION_SIZE,
    show_default=True,
    help="int8: calibration images to use.",
)
@click.option(
    "--calibration-method", "method", type=click.Choice(CALIBRATION_METHODS), default="minmax", show_default=True
)
@click.option(
    "--gate-data",
    help="int8: held-out images for the accuracy gate (never calibration images); given, a calibration "
    "folder is used whole. Default: the held-out split of the calibration data.",
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
@image_size_option("Default: the checkpoint's crop size.")
@click.option(
    "--coreml-input",
    type=click.Choice(["image", "tensor"]),
    default="image",
    show_default=True,
    help="Core ML input: an RGB image (normalization inside) or a normalized float tensor.",
)
@click.option(
    "--triton-name",
    default=DEFAULT_NAME,
    show_default=True,
    callback=_triton_name,
    help="triton: the model's name (its folder in the repository; what clients ask for).",
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
    checkpoint: Path | None,
    fmt: str | None,
    list_formats: bool,
    as_json: bool,
    output: Path | None,
    batch_size: int | None,
    opset: int,
    precision: str | None,
    precisions: str | None,
    image_size: int | None,
    coreml_input: str,
    triton_name: str,
    no_validate: bool,
    atol: float | None,
    data: Path | None,
    **quantize: Any,  # the int8 options, named as QuantizeOptions' fields
) -> None:
    """Export CHECKPOINT (.pth / .safetensors) to a deployable artifact.

    \b
    Examples:
      alexnet-export --list-formats                              # every format: suffix, precisions, extras
      alexnet-export --format onnx runs/best.pth                 # runs/best.onnx, dynamic batch
      alexnet-export --format torchscript runs/best.pth --batch 8 -o model.pt
      alexnet-export --format coreml runs/best.pth --precision fp32 --coreml-input tensor
      alexnet-export --format all runs/best.pth -o artifacts/    # every format, then a table
      alexnet-export --format onnx runs/best.pth --data photos/ --atol 1e-3
      alexnet-export --format onnx --precision int8 runs/best.pth  # runs/best-int8.onnx, gated
      alexnet-export --format onnx --precision int8 runs/best.pth --calibration photos/ --gate-data held-out/
      alexnet-export --format all --precisions fp32,int8 runs/best.pth -o artifacts/
      alexnet-export --format openvino runs/best.pth             # runs/best.xml + best.bin, fp32 weights
      alexnet-export --format openvino --precision int8 runs/best.pth --calibration photos/  # NNCF, gated
      alexnet-export --format executorch runs/best.pth           # runs/best.pte: XNNPACK, 1..15 images per call
      alexnet-export --format executorch --precision int8 runs/best.pth --calibration photos/  # PT2E, gated
      alexnet-export --format litert runs/best.pth               # runs/best.tflite, fixed batch 1 (--batch N)
      alexnet-export --format litert --precision int8 runs/best.pth --calibration photos/  # full-integer, gated
      alexnet-export --format triton runs/best.pth -o repo/      # repo/alexnet/config.pbtxt, 1/model.onnx
      alexnet-export --format triton --precision int8 runs/best.pth -o repo/ --triton-name alexnet-int8

    Validation (on by default) loads the artifact back and compares its logits with the
    PyTorch model on random and preprocessed images; a failure exits with status 1 and
    keeps the artifact. Core ML defaults to fp16 and an RGB image input (batch 1,
    normalization inside the model); it predicts only on macOS, so elsewhere validation
    checks the package's inputs, outputs, labels, metadata and weights.

    int8 ONNX is calibrated (static QDQ, per-channel weights, types for --target-cpu) and must
    pass the accuracy gate on held-out images: top-1 agreement with fp32 and, where the images
    have labels, the accuracy drop. When it fails, the most sensitive layers stay fp32 one at a
    time; if nothing passes, the command exits 1 and writes nothing (unless --force). int8
    OpenVINO IR is quantized by NNCF on the same calibration images and passes the same gate
    (layers kept in fp32 through NNCF's ignored scope).

    --format triton writes REPO/NAME/config.pbtxt, 1/model.onnx (the ONNX export, any precision)
    and labels.txt; other models in REPO are left as they are. Triton batches requests itself (up
    to 32); with --batch N the model takes exactly N (max_batch_size 0, no dynamic batching).
    Validation also checks the config and labels against the ONNX model.
    """
    if list_formats:
        _list_formats(click.get_current_context(), as_json)
    if as_json:
        raise click.UsageError("--json goes with --list-formats")
    if checkpoint is None or fmt is None:
        raise click.UsageError(f"Missing {'argument CHECKPOINT' if checkpoint is None else 'option --format'}.")
    jobs = _checked_jobs(checkpoint, fmt, output, batch_size, precision, precisions, coreml_input)
    settings = {"batch_size": batch_size, "opset": opset, "image_size": image_size, "coreml_input": coreml_input}
    settings.update(quantize=QuantizeOptions(**quantize), echo=click.echo, triton_name=triton_name)
    places = cli_jobs.check_before_writing(checkpoint, jobs, output, None if no_validate else data, settings)
    checks = {"no_validate": no_validate, "atol": atol, "data": data}
    failed = cli_jobs.run_jobs(checkpoint, jobs, places, settings, checks)
    if failed:
        kept = ", ".join(map(str, failed))
        click.echo(f"Error: validation failed for {kept} (artifact kept; see the numbers above)", err=True)
        sys.exit(1)


def _checked_jobs(
    checkpoint: Path,
    fmt: str,
    output: Path | None,
    batch_size: int | None,
    precision: str | None,
    precisions: str | None,
    coreml_input: str,
) -> list[cli_jobs.Job]:
    """The jobs, once the options fit together (usage errors, exit 2) and the checkpoint exists."""
    chosen = _exportable_formats() if fmt == "all" else (fmt,)
    jobs = cli_jobs.plan_jobs(chosen, precision, precisions)
    if "coreml" in chosen and coreml_input == "image" and batch_size not in (None, 1):
        raise click.UsageError(
            "a Core ML image input takes one image at a time; add --coreml-input tensor to use --batch"
        )
    if fmt == "triton" and len(jobs) > 1:
        raise click.UsageError("--format triton writes one model: give one precision (and a --triton-name for each)")
    if fmt == "all" and output is not None and not output.is_dir():
        raise click.UsageError(f"with --format all, -o must be an existing directory (got {output})")
    if len(jobs) > 1 and output is not None and not output.is_dir():
        raise click.UsageError(f"with several precisions, -o must be an existing directory (got {output})")
    if not Path(checkpoint).exists():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    return jobs


def _exportable_formats() -> tuple[str, ...]:
    """--format all: every single-artifact format whose exporter's modules are installed; a line for each skipped."""
    chosen = []
    for name in FORMATS:
        table = formats.FORMATS[name]
        if table.exportable():
            chosen.append(name)
        else:
            click.echo(
                f"skipping {name}: its export needs the [{table.export_extra}] extra ({formats.install_hint(table.export_extra)})",
                err=True,
            )
    return tuple(chosen)


if __name__ == "__main__":
    main()
