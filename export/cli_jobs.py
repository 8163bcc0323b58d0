"""What `alexnet-export` does with its jobs (one per artifact: format, precision, name tag).

Every output place and the --data images are checked before the first artifact is written;
then each artifact is exported and checked (validated against PyTorch, or, for int8 ONNX,
its accuracy-gate record read back), and several artifacts end in one table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runtime import formats
from runtime.formats import PRECISIONS

if TYPE_CHECKING:
    from export.source import Source

Job = tuple[str, str, str | None]  # (format, precision, name tag)
TABLE_HEADER = ("format", "precision", "size", "agreement", "accuracy", "check", "artifact")


def plan_jobs(formats: tuple[str, ...], precision: str | None, precisions: str | None) -> list[Job]:
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


def check_before_writing(
    checkpoint: Path, jobs: list[Job], output: Path | None, data: Path | None, settings: dict
) -> list[Path]:
    """Every output place and the --data images, checked before the first artifact replaces an old
    one; the places, in the jobs' order (each checked here once, then written by write_artifact)."""
    from export import plan_output

    options = {k: settings[k] for k in ("batch_size", "coreml_input", "triton_name")}
    places = [plan_output(checkpoint, name, output, tag=tag, precision=p, **options) for name, p, tag in jobs]
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
    return places


def run_jobs(checkpoint: Path, jobs: list[Job], places: list[Path], settings: dict, checks: dict) -> list[Path]:
    """Export and check every job into its checked place (a table of them when there are several),
    all from one read of the checkpoint; the artifacts that failed."""
    from export.source import Source

    source = Source.open(checkpoint)
    rows, failed = [], []
    for job, place in zip(jobs, places):
        *row, path, passed = export_one(source, job, place, settings, checks)
        rows.append(tuple(row))
        if not passed:
            failed.append(path)
    if len(rows) > 1:
        _table(TABLE_HEADER, rows)
    return failed


def export_one(source: Source, job: Job, place: Path, settings: dict, checks: dict) -> tuple:
    """Export and check one artifact; its table row, its path, then whether it passed."""
    from export import write_artifact

    name, chosen, _ = job
    if name == "onnx" and chosen == "fp16":
        click.echo(
            "warning: fp16 ONNX runs slower than fp32 on CPUs (onnxruntime's CPU provider casts most fp16 ops "
            "back to fp32); it is meant for GPUs and the Core ML execution provider",
            err=True,
        )
    start = time.perf_counter()
    path = write_artifact(source, name, place, precision=chosen, **settings)
    click.echo(f"wrote {path} ({name}, {chosen}, {time.perf_counter() - start:.1f} s)")
    if name == "triton":
        verdict, agreement, accuracy, passed = _triton_verdict(path, chosen, source, checks)
    elif chosen == "int8" and formats.get(name).gated_int8:
        verdict, agreement, accuracy, passed = _gate_verdict(path, formats.get(name).backend)
    elif checks["no_validate"]:
        verdict, agreement, accuracy, passed = "skipped", "-", "-", True
    else:
        verdict, agreement, accuracy, passed = _validation_verdict(path, source, checks)
    return name, chosen, _size(path), agreement, accuracy, verdict, str(path), path, passed


def _gate_verdict(path: Path, backend: str) -> tuple[str, str, str, bool]:
    """A gated int8 artifact is written only once it passed the gate (or with --force): report its record."""
    import runtime

    with runtime.load(path, backend=backend, device="cpu") as predictor:
        gate = dict((predictor.metadata.quantization or {}).get("gate") or {})
    verdict = "gate PASS" if gate.get("passed") else "gate FAIL (forced)"
    accuracy = "-"
    if gate.get("accuracy_int8") is not None:
        accuracy = f"{gate['accuracy_int8']:.2%} (fp32 {gate['accuracy_fp32']:.2%})"
    return verdict, f"{gate.get('agreement', 0):.2%}", accuracy, True


def _triton_verdict(path: Path, chosen: str, source: Source, checks: dict) -> tuple[str, str, str, bool]:
    """A Triton repository: its config and labels checked against its ONNX model, which is checked as
    --format onnx checks its artifact (int8: the gate's record; the others: against PyTorch)."""
    from export.to_triton import MODEL_FILE, validate_repository

    gated = chosen == "int8"
    row = _gate_verdict(path / MODEL_FILE, formats.get("onnx").backend) if gated else ("skipped", "-", "-", True)
    if checks["no_validate"]:
        return row
    result = validate_repository(path, source, atol=checks["atol"], data=checks["data"], numerical=not gated)
    click.echo(f"  {result.summary()}")
    if gated:
        return (row[0] if result.passed else "FAIL"), row[1], row[2], result.passed
    agreement = "-" if result.top1 is None else f"{result.top1:.2%}"
    return ("PASS" if result.passed else "FAIL"), agreement, "-", result.passed


def _validation_verdict(path: Path, source: Source, checks: dict) -> tuple[str, str, str, bool]:
    from export.validate import validate_artifact

    result = validate_artifact(path, source, atol=checks["atol"], data=checks["data"])
    click.echo(f"  {result.summary()}")
    agreement = "-" if result.top1 is None else f"{result.top1:.2%}"
    return ("PASS" if result.passed else "FAIL"), agreement, "-", result.passed


def _size(path: Path) -> str:
    from runtime.formats import artifact_bytes

    return f"{artifact_bytes(path) / 1e6:.1f} MB"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
