"""Hand-made alexnet-report documents (what report.json holds) for the page, plot and pruning tests:
no export, no benchmark."""

from __future__ import annotations

from pathlib import Path

from benchmarks import recommend

GATE = {"max_agreement_loss": 0.01, "max_accuracy_drop": 0.01}
MACHINE = {"date": "2026-01-01", "cpu": "CPU", "physical_cores": 2, "logical_cpus": 2, "os": "Linux"}
MACHINE |= {"python": "3.11", "threads": 2, "libraries": {}}
MODEL = {"checkpoint": "runs/demo/best.pth", "variant": "cifar", "num_classes": 5, "image_size": 32}
MODEL |= {"parameters": 1e6, "flops_per_image": 1e9, "weight_bytes": {"fp32": 4e6}}
COMMAND = (
    "alexnet-report runs/demo/best.pth --formats torchscript,onnx,coreml --precisions fp32,fp16,int8 --devices cpu "
    "--batch-sizes 1,8,32 --max-images 1000 --warmup 3 --min-time 2.0 --repeats 3 -o 'report dir/with a long name'"
)


def entry(label, path, *, size_mb, top1, agreement, timings, **extra):
    """An artifact dict as the report keeps it; timings: {batch: (p50 ms, images/s)} on cpu, or a dict
    {"status", "reason"} for a row the benchmark did not time."""
    fmt, precision = label.split()
    if "status" in timings:
        device = {**timings, "batches": []}
    else:
        batches = [{"batch_size": n, "p50_ms": p, "throughput_ips": ips} for n, (p, ips) in timings.items()]
        device = {"status": "ok", "reason": None, "batches": batches}
    row = {"label": label, "format": fmt, "precision": precision, "path": None if path is None else str(path)}
    row |= {"size_bytes": int(size_mb * 1e6), "status": "ok", "reason": None, "check_passed": True, "check": "PASS"}
    row |= {"top1": top1, "agreement": agreement, "max_abs_diff": 0.0, "devices": {"cpu": device}}
    return row | extra


def document(artifacts_dir: Path = Path("report/artifacts"), checkpoint: Path = Path("runs/demo/best.pth")) -> dict:
    """A default run's rows: int8 ONNX wins every goal; fp16 TorchScript not timed; Core ML by the stand-in."""
    a = artifacts_dir
    emulated = {"status": "skipped", "reason": "skipped by the benchmark: fp16 on CPU is an emulation here"}
    mac_only = {"status": "skipped", "reason": "skipped by the benchmark: Core ML predicts only on macOS"}
    note = "Core ML prediction needs macOS; this is Linux: top-1 and agreement from the Core ML reference evaluator"
    artifacts = [
        entry("checkpoint fp32", checkpoint, size_mb=228.2, top1=0.9025, agreement=1.0, timings={1: (15.3, 65), 32: (56, 570)}),
        entry("torchscript fp16", a / "model-fp16.pt", size_mb=114.1, top1=0.9025, agreement=1.0, timings=emulated),
        entry("onnx fp32", a / "model.onnx", size_mb=228.2, top1=0.9025, agreement=1.0, timings={1: (8.7, 115), 32: (35.6, 897)}),
        entry("onnx int8", a / "model-int8.onnx", size_mb=57.2, top1=0.90, agreement=0.9975, timings={1: (2.05, 488), 32: (11, 2889)}),
        entry("coreml fp16", a / "model-fp16.mlpackage", size_mb=114.1, top1=0.9025, agreement=1.0, timings=mac_only,
              stand_in="coreml-reference", note=note),
    ]  # fmt: skip
    return {
        "schema": "alexnet-report/1",
        "command": COMMAND,
        "machine": MACHINE,
        "model": MODEL,
        "data": {"images": 400, "source": "synthetic", "split": "val"},
        "gate": GATE,
        "devices": ["cpu"],
        "batch_sizes": [1, 8, 32],
        "artifacts": artifacts,
        "recommendations": recommend.recommend(artifacts, "cpu", GATE),
        "excluded": recommend.excluded(artifacts, GATE, "cpu"),
        "warnings": [],
    }
