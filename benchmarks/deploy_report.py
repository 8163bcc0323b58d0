"""alexnet-report's work: every deployment option of one checkpoint, exported, checked and timed.

    entries = export_entries(checkpoint, jobs, out / "artifacts", say)   # export.export_artifact, int8 gated
    evaluate_entries(entries, checkpoint, data, say)                   # top-1, agreement, max |dlogit|, check
    parts = benchmark_entries(entries, checkpoint, settings, say)      # alexnet-bench's isolated workers
    attach_timings(entries, parts["result"].rows, settings)

An `Entry` is one row of the report: the checkpoint itself (PyTorch eager, the reference) or one
exported artifact. Nothing here raises for one artifact's failure: its row says what failed
(export, run, check, benchmark) and why, and the report goes on.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime import formats
from runtime.errors import DeployError, first_line

# The runtime (and benchmark) backend that runs each format (the format table's); "checkpoint" is the
# PyTorch eager reference.
FORMAT_BACKENDS = {"checkpoint": "pytorch", **{f.name: f.backend for f in formats.FORMATS.values() if f.backend}}
EVAL_BATCH = 32
DEFAULT_MAX_IMAGES = 1000  # evaluation images per artifact: enough for top-1 to 0.1%, bounded for big data sets
STATUS_ORDER = ("ok", "skipped", "failed")  # an entry's status is the worst of its steps'


@dataclass
class Entry:
    format: str  # "checkpoint" or an export format
    precision: str
    path: str | None = None
    size_bytes: int | None = None
    export_s: float | None = None
    status: str = "ok"  # ok | skipped | failed: the worst of export, run, check
    reason: str | None = None
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None  # top-1 agreement with the fp32 checkpoint on the evaluation images
    max_abs_diff: float | None = None  # max |logit - checkpoint logit| over those images
    check: str | None = None  # the validation's one-line summary
    check_passed: bool | None = None
    # The engine that computed top-1 and agreement when it is not the format's own: Core ML off macOS is
    # evaluated by the Core ML reference evaluator ("coreml-reference"), never timed (its speed is not Core ML's).
    stand_in: str | None = None
    note: str | None = None  # why a stand-in evaluated the row, in words
    removed: bool = False  # the file was deleted after the report (not recommended; alexnet-report --prune-artifacts)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # per device: status, reason, batches

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}"

    def mark(self, status: str, reason: str) -> None:
        """Record a skip or failure; the first reason of the worst status stays."""
        if STATUS_ORDER.index(status) > STATUS_ORDER.index(self.status):
            self.status, self.reason = status, reason

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **dataclasses.asdict(self)}


def export_entries(
    checkpoint: Path,
    jobs: Sequence[tuple[str, str, str | None]],
    out_dir: Path,
    say: Callable[[str], None],
    quantize: Any = None,
) -> list[Entry]:
    """The checkpoint's own row, then each job (format, precision, name tag) exported into the folder
    `out_dir` (int8 calibrated and gated as `quantize`, an export.QuantizeOptions, says). Core ML
    gets a tensor input, so that the same file is evaluated and benchmarked on float batches. Every
    other option is export's default, what `alexnet-export` ships: a dynamic batch, except LiteRT's
    fixed batch 1 (the Predictor pads and splits to it; see `benchmark_entries`) and ExecuTorch's
    limit of 15 images per call (the Predictor splits to it)."""
    from export import QuantizeOptions, export_artifact
    from runtime.formats import artifact_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    extra_int8 = {"quantize": quantize or QuantizeOptions()}
    entries = [Entry("checkpoint", "fp32", str(checkpoint), artifact_bytes(checkpoint))]
    for number, (fmt, precision, tag) in enumerate(jobs, 1):
        entry = Entry(fmt, precision)
        say(f"[export {number}/{len(jobs)}] {entry.label}")
        table = formats.get(fmt)
        if not table.exportable():
            entry.mark("skipped", f"not exported: needs the [{table.export_extra}] extra")
            entries.append(entry)
            continue
        extra: dict[str, Any] = {"coreml_input": "tensor"} if fmt == "coreml" else {}
        extra.update(extra_int8 if precision == "int8" else {})
        start = time.perf_counter()
        try:
            path = export_artifact(
                checkpoint, fmt, out_dir, precision=precision, tag=tag, echo=lambda line: say(f"    {line}"), **extra
            )
        except DeployError as exc:
            entry.mark("failed", f"export failed: {first_line(exc)}")
        else:
            entry.path, entry.size_bytes = str(path), artifact_bytes(path)
        entry.export_s = time.perf_counter() - start
        entries.append(entry)
    return entries


def evaluation_data(checkpoint: Any, data: str | None, max_images: int, say: Callable[[str], None]) -> tuple[Any, str]:
    """(dataset, its name): the val split of `data`, or of the checkpoint's own training data, preprocessed
    with the checkpoint's spec, labelled with its class indices, at most `max_images` evenly spread images."""
    from torch.utils.data import Subset

    from alexnet.data import load_eval_split
    from alexnet.evaluate import match_classes
    from export.quantize import training_seed

    args = (checkpoint.training or {}).get("args") or {}
    source = data or args.get("data") or "synthetic"
    extra = {}
    if source == "synthetic" and isinstance(args.get("synthetic_val_per_class"), int):
        extra["synthetic_val_per_class"] = args["synthetic_val_per_class"]
    dataset, names = load_eval_split(
        source, split="val", preprocess=checkpoint.preprocess, seed=training_seed(checkpoint.training), **extra
    )
    dataset = match_classes(
        dataset, list(names), list(checkpoint.class_names), model="the checkpoint", data=source, note=say
    )
    if len(dataset) > max_images:  # evenly spread: a folder's images are sorted by class
        dataset = Subset(dataset, np.linspace(0, len(dataset) - 1, max_images).round().astype(int).tolist())
    if len(dataset) == 0:
        raise DeployError(f"{source}: the val split has no images to evaluate on")
    return dataset, source


def evaluate_entries(entries: list[Entry], checkpoint: Any, dataset: Any, say: Callable[[str], None]) -> None:
    """Each entry's top-1 on `dataset`, and its logits against the checkpoint's (entries[0]) with the
    exporter's own tolerances (`export.validate.compare`); Core ML off macOS is evaluated by the Core ML
    reference evaluator and gets the structural checks too."""
    from export.validate import check_coreml_package, compare

    names = list(checkpoint.class_names)
    reference = None
    for number, entry in enumerate(entries, 1):
        if entry.path is None:
            continue
        say(f"[evaluate {number}/{len(entries)}] {entry.label} on {len(dataset)} images")
        logits = _logits_and_accuracy(entry, dataset, names)
        if entry.format == "checkpoint":
            reference = logits
            entry.agreement, entry.max_abs_diff = (None, None) if logits is None else (1.0, 0.0)
            entry.check, entry.check_passed = "the reference", logits is not None
            continue
        if logits is not None and reference is not None:
            result = compare(entry.format, logits, reference, entry.precision)
            entry.agreement, entry.max_abs_diff = result.top1, result.max_abs
            entry.check, entry.check_passed = result.summary(), result.passed
        if entry.format == "coreml" and (logits is None or entry.stand_in):  # off macOS: its structure too
            structural = check_coreml_package(Path(entry.path), checkpoint)
            entry.check = f"{entry.check}; {structural.note}" if entry.check else structural.summary()
            entry.check_passed = structural.passed and entry.check_passed is not False
        if entry.check_passed is False:
            entry.mark("failed", f"validation failed: {entry.check}")


def _logits_and_accuracy(entry: Entry, dataset: Any, class_names: list[str]) -> np.ndarray | None:
    """The entry's logits (N, classes) over `dataset` (top-1/top-5 set on it), or None with the reason marked."""
    from alexnet.evaluate import evaluate

    predictor = _open(entry)
    if predictor is None:
        return None
    captured: list[np.ndarray] = []

    def logits_fn(batch: np.ndarray) -> np.ndarray:  # (N, 3, H, W) -> (N, classes), kept for the comparison
        captured.append(predictor.predict_logits(batch))
        return captured[-1]

    try:
        with predictor:
            report = evaluate(logits_fn, dataset, class_names, batch_size=EVAL_BATCH, progress=False)
    except DeployError as exc:
        entry.mark("failed", f"evaluation failed: {first_line(exc)}")
        return None
    entry.top1, entry.top5 = report["top1"], report["top5"]
    return np.concatenate(captured)


def _open(entry: Entry) -> Any:
    """The entry's Predictor on its format's own engine (the format table's backend), or, for Core ML off
    macOS, on the Core ML reference evaluator (the program's own numbers: top-1 and agreement, never timed);
    None, with the reason marked, when neither opens."""
    import runtime
    from runtime.backends import coreml_backend_name, platform_name

    try:
        return runtime.load(entry.path, backend=FORMAT_BACKENDS[entry.format], device="cpu")
    except DeployError as exc:
        reason = f"cannot run here: {first_line(exc)}"
    stand_in = coreml_backend_name() if entry.format == "coreml" else FORMAT_BACKENDS[entry.format]
    if stand_in != FORMAT_BACKENDS[entry.format]:
        try:
            predictor = runtime.load(entry.path, backend=stand_in, device="cpu")
        except DeployError:
            pass
        else:
            entry.stand_in = stand_in
            entry.note = (
                f"Core ML prediction needs macOS; this is {platform_name()}: top-1 and agreement from the Core ML "
                "reference evaluator (the program's own numbers), no Core ML latency"
            )
            return predictor
    entry.mark("skipped", reason)
    return None


def benchmark_entries(
    entries: list[Entry], checkpoint: Path, settings: Any, say: Callable[[str], None]
) -> dict[str, Any]:
    """alexnet-bench's suite (one spawned worker per artifact and device) on exactly these files: the
    pieces of its document (`benchmarks.report.build_document`)."""
    from benchmarks.artifacts import Artifacts, open_source
    from benchmarks.measure import run_benchmark
    from benchmarks.variant import Variant

    exported = [e for e in entries if e.path is not None and e.format != "checkpoint"]
    pairs = [(FORMAT_BACKENDS[e.format], Variant(e.precision)) for e in entries if e.path is not None]
    with tempfile.TemporaryDirectory(prefix="alexnet-report-") as tmp:
        source = open_source(checkpoint, Path(tmp))
        # per_batch=False: every row times the very file this report exported, sized and evaluated. A LiteRT
        # file's batch is fixed (export's default, 1: what `alexnet-export --format litert` ships), so a larger
        # batch is timed as alexnet-run runs it with that file: padded and split by the Predictor into calls of
        # 1 (the row's info says so). alexnet-bench instead exports one file per batch size, to time the engine
        # at each; here that would time files other than the ones the report's other columns describe.
        artifacts = Artifacts(source, Path(tmp), per_batch=False)
        artifacts.adopt({"paths": {(e.format, e.precision): e.path for e in exported}})  # no export twice
        return run_benchmark(source, Path(tmp), dataclasses.replace(settings, pairs=pairs), say, artifacts)


def attach_timings(entries: list[Entry], rows: Sequence[Any], devices: Sequence[str]) -> None:
    """Each entry's benchmark rows, per device: status, reason (failures, and batches run in parts), and per
    batch size p50, images/s, floor."""
    for entry in entries:
        key = (FORMAT_BACKENDS[entry.format], entry.precision)
        for device in devices:
            if entry.path is None:
                entry.devices[device] = {"status": entry.status, "reason": "not exported", "batches": []}
                continue
            mine = [r for r in rows if (r.backend, r.variant, r.device) == (*key, device)]
            ok = sorted((r for r in mine if r.status == "ok"), key=lambda r: r.batch_size)
            bad = [r for r in mine if r.status != "ok"]
            # ... and the batches the engine did not take in one call, timed as alexnet-run runs them (in parts)
            notes = [f"batch {r.batch_size}: {r.info['run_as']}" for r in ok if r.info.get("run_as")]
            reason = "; ".join([*timing_reasons(bad), *notes]) or None
            status = "ok" if ok else (bad[0].status if bad else "skipped")
            entry.devices[device] = {
                "status": status,
                "reason": reason if bad or ok else "not benchmarked",
                "batches": [_timing(r) for r in ok],
            }


def timing_reasons(rows: Sequence[Any]) -> list[str]:
    """One plain sentence per reason the benchmark did not time rows: who (the benchmark skipped it, or it
    failed there), at which batch sizes (none named: all of them), and why, e.g. "skipped by the benchmark:
    fp16 on CPU is an emulation here, not a deployment choice"."""
    groups: dict[tuple[str, str], list[int | None]] = {}
    for row in rows:
        groups.setdefault((row.status, row.reason or "no reason given"), []).append(row.batch_size)
    out = []
    for (status, reason), sizes in groups.items():
        who = "skipped by the benchmark" if status == "skipped" else f"{status} in the benchmark"
        where = "" if None in sizes else " at batch " + ", ".join(map(str, sorted(sizes)))
        out.append(f"{who}{where}: {reason}")
    return out


def _timing(row: Any) -> dict[str, Any]:
    return {
        "batch_size": row.batch_size,
        "p50_ms": row.latency_ms["p50"],
        "p99_ms": row.latency_ms["p99"],
        "spread": row.latency_ms["spread"],
        "throughput_ips": row.throughput_ips,
        "speedup": row.speedup,
        "floor_fraction": row.floor_fraction,
        "floor_note": row.floor_note,
    }
