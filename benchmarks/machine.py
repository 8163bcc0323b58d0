"""The machine a benchmark ran on: what it is, and what it can do at most.

`describe_machine` records the hardware and library versions; `measure_limits` measures
the two rates that bound AlexNet's speed: the matrix-multiply rate (GFLOP/s) and the
memory bandwidth (GB/s). Each is the best of several tries and sizes, because a floor
must be optimistic: a floor computed from a rate slower than the truth would not be one.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from benchmarks.ort_matmul import measure_matmul_onnxruntime
from benchmarks.ov_matmul import measure_matmul_openvino
from benchmarks.timing import Clock, best_seconds
from benchmarks.variant import TORCH_DTYPES

EDGE_LIBRARIES = ("executorch", "ai-edge-litert", "litert-torch")  # distributions of the edge formats' engines
LIBRARIES = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "coremltools",
    "alexnet-deploy",
    *EDGE_LIBRARIES,
)


def cpu_model() -> str:
    if sys.platform == "darwin":
        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
                ).stdout.strip()
                or platform.processor()
            )
        except (OSError, subprocess.SubprocessError):
            return platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int:
    """Cores, not hardware threads (a second thread per core adds little to matmul speed)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cores, physical = set(), "0"
            for line in handle:
                if line.startswith("physical id"):
                    physical = line.split(":", 1)[1].strip()
                elif line.startswith("core id"):
                    cores.add((physical, line.split(":", 1)[1].strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5).stdout
            return int(out.strip())
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return os.cpu_count() or 1


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def describe_machine(threads: int | None = None) -> dict[str, Any]:
    """Hardware, OS, library versions, the load and CPU clock when the run started (a busy or throttled
    machine is noisy; `benchmarks.cli` adds both again at the end)."""
    import torch

    from benchmarks.peak import cpu_frequency

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "instruction_set": _instruction_set(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "threads": threads or torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_frequency": cpu_frequency(),  # governor, current/max MHz where the OS tells: throttling shows
        "libraries": library_versions(),
        "cuda": None,
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["cuda"] = {
            "device": props.name,
            "count": torch.cuda.device_count(),
            "memory_gib": props.total_memory / 2**30,
            "capability": f"{props.major}.{props.minor}",
            "cuda_version": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info


def _instruction_set() -> str:
    """The CPU's vector and int8 instruction set, in words (runtime.cpu: the one reader of its flags)."""
    from runtime.cpu import DESCRIPTIONS, detect_cpu

    return DESCRIPTIONS[detect_cpu()]


@dataclass
class Limits:
    """Measured peak rates of one device; `matmul_gflops` per precision ("fp32", "fp16", "bf16", "int8":
    GOP/s for int8); `notes`: per precision, how a rate was found where it is not simply measured."""

    device: str
    matmul_gflops: dict[str, float]
    bandwidth_gbps: float
    details: dict[str, Any] = field(default_factory=dict)  # every try, for the JSON
    notes: dict[str, str] = field(default_factory=dict)

    def gflops(self, precision: str) -> float:
        """The rate for `precision`, or fp32's where that was not measured."""
        return self.matmul_gflops.get(precision, self.matmul_gflops["fp32"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "matmul_gflops": self.matmul_gflops,
            "bandwidth_gbps": self.bandwidth_gbps,
            "details": self.details,
            "notes": self.notes,
        }


def _sync_for(torch: Any, device: str) -> Callable[[], None]:
    if device == "cuda":
        return torch.cuda.synchronize
    if device == "mps":
        return torch.mps.synchronize
    return lambda: None


CPU_SIZES = (1024, 2048)  # n of the n x n matmuls timed on the CPU


def measure_matmul(
    device: str = "cpu",
    precision: str = "fp32",
    sizes: tuple[int, ...] | None = None,
    repeats: int = 3,
    clock: Clock = time.perf_counter,
) -> dict[int, float]:
    """GFLOP/s of an (n x n) @ (n x n) matmul in torch for each n: 2 n^3 / seconds."""
    import torch

    if sizes is None:
        sizes = CPU_SIZES if device == "cpu" else (4096, 8192)
    dtype = getattr(torch, TORCH_DTYPES[precision])
    sync = _sync_for(torch, device)
    rates = {}
    # cuDNN runs fp32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32), so the
    # fp32 floor on CUDA uses the TF32 matmul rate: with plain fp32 it would not bound them.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = device == "cuda" and torch.backends.cudnn.allow_tf32
    try:
        for n in sizes:
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            rates[n] = 2 * n**3 / best_seconds(lambda: torch.mm(a, b), sync, repeats, clock) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return rates


def measure_matmul_numpy(
    sizes: tuple[int, ...] = CPU_SIZES, repeats: int = 3, clock: Clock = time.perf_counter
) -> dict[int, float]:
    """The same on the CPU through numpy's BLAS: another library, another chance at the peak."""
    import numpy as np

    rng = np.random.default_rng(0)
    rates = {}
    for n in sizes:
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        rates[n] = 2 * n**3 / best_seconds(lambda: a @ b, lambda: None, repeats, clock) / 1e9
    return rates


def measure_bandwidth(
    device: str = "cpu", mbytes: int = 256, repeats: int = 5, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """GB/s of a copy (read + write counted) and of a sum (read only) over a buffer larger than caches."""
    import torch

    n = mbytes * 2**20 // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    sync = _sync_for(torch, device)
    copy_s = best_seconds(lambda: dst.copy_(src), sync, repeats, clock)
    sum_s = best_seconds(lambda: src.sum(), sync, repeats, clock)
    return {"copy": 2 * 4 * n / copy_s / 1e9, "read": 4 * n / sum_s / 1e9}


def measure_limits(
    device: str = "cpu",
    precisions: tuple[str, ...] = ("fp32",),
    *,
    sizes: tuple[int, ...] | None = None,
    mbytes: int = 256,
    repeats: int = 3,
    clock: Clock = time.perf_counter,
) -> Limits:
    """The best matmul rate per precision and the best bandwidth on `device` (threads as set in torch).

    On the CPU the fp32 matmul is timed in torch, numpy, onnxruntime and OpenVINO, and the fastest
    counts: the floor is meant for every backend, and one library's slow path must not lower the bar.
    `clock` is the benchmark's clock (wall time, or the process's CPU time; see timing.CLOCKS).
    int8 (CPU only) in GOP/s: measured and derived from fp32 by the instruction set, see benchmarks.int8.
    """
    details: dict[str, Any] = {"matmul": {}, "bandwidth": measure_bandwidth(device, mbytes, repeats, clock)}
    gflops, notes = {}, {}
    for precision in dict.fromkeys(("fp32", *precisions)):  # fp32 always: int8 and fallbacks build on it
        if precision == "int8":
            continue
        if device == "cpu" and precision in ("fp16", "bf16"):
            # torch's fp16/bf16 matmul on a CPU is mostly emulated: minutes at n = 2048, far under fp32's rate.
            # fp32's rate stands in; peak.with_peak raises it where the instruction set computes in fp16/bf16.
            details["matmul"][precision] = {"the fp32 rate (not timed)": gflops["fp32"]}
            gflops[precision] = gflops["fp32"]
            continue
        rates = {f"torch {n}": r for n, r in measure_matmul(device, precision, sizes, repeats, clock).items()}
        if device == "cpu" and precision == "fp32":
            rates.update({f"numpy {n}": r for n, r in measure_matmul_numpy(sizes or CPU_SIZES, repeats, clock).items()})
            ort_rates = measure_matmul_onnxruntime(sizes or CPU_SIZES, repeats, torch_threads(), clock)
            rates.update({f"onnxruntime {n}": r for n, r in ort_rates.items()})
            ov_rates = measure_matmul_openvino(sizes or CPU_SIZES, repeats, torch_threads(), _clock_name(clock))
            rates.update({f"openvino {n}": r for n, r in ov_rates.items()})
        details["matmul"][precision] = rates
        gflops[precision] = max(rates.values())
    if "int8" in precisions and device == "cpu":  # int8 rows run on the CPU only
        from benchmarks.int8 import measure_int8

        rates, basis = measure_int8(gflops["fp32"], sizes or CPU_SIZES, repeats, torch_threads(), clock)
        details["matmul"]["int8"], details["int8"] = rates, basis
        gflops["int8"], notes["int8"] = max(rates.values()), basis["note"]
    return Limits(device, gflops, max(details["bandwidth"].values()), details, notes)


def _clock_name(clock: Clock) -> str:
    from benchmarks.timing import CLOCKS

    return next((name for name, c in CLOCKS.items() if c is clock), "wall")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def best_limits(measurements: list[Limits]) -> Limits:
    """Several measurements of one device (before, during and after a run) -> the best rate of each."""
    first = measurements[0]
    gflops = {p: max(m.matmul_gflops.get(p, 0.0) for m in measurements) for p in first.matmul_gflops}
    bandwidth = max(m.bandwidth_gbps for m in measurements)
    return Limits(first.device, gflops, bandwidth, {"measurements": [m.details for m in measurements]}, first.notes)
