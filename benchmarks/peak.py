"""The CPU's instruction-set peak: what its cores could compute per second if every cycle issued
fused multiply-adds on every SIMD lane. The floor's rate is the larger of this and the best
matrix-multiply rate any installed library measured, per precision, so that it is an upper bound
on speed (a floor set by one library's GEMM is beaten by another's, or by Winograd convolutions).

    peak (GFLOP/s) = cores x frequency (GHz) x FMA units per core x lanes per FMA x 2 (multiply + add)
                     x the precision's operations per lane and instruction (int8, bf16, fp16)

Inputs: cores = min(threads, physical cores) (the rows run on that many); frequency = the largest of
cpufreq's cpuinfo_max_freq (turbo included) and /proc/cpuinfo's "cpu MHz" (the current clock: on a VM
without cpufreq the turbo clock is unknown, which is why a measured rate above the peak still counts);
lanes from the widest vector unit in the flags (AVX-512: 16 fp32, AVX2: 8, NEON/SSE: 4); FMA units: 2
on x86 (the most any x86 core has), 4 on arm64 (Apple and Neoverse V cores have four 128-bit pipes).
int8 x the instruction set's factor (`benchmarks.int8`; AMX tiles: 4096 ops per cycle and core), bf16 x 2
with AVX512_BF16 (VDPBF16PS: two products per lane; AMX: 2048), fp16 x 2 where the hardware computes in
it (AVX512_FP16, ARM asimdhp), else fp16 runs at the fp32 rate (F16C only converts).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CPUFREQ = Path("/sys/devices/system/cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpuinfo_mhz(cpuinfo: str) -> list[float]:
    values = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                values.append(float(value))
            except ValueError:
                continue
    return values


def cpu_frequency(root: Path = CPUFREQ, cpuinfo: str | None = None) -> dict[str, Any]:
    """Frequency scaling as the OS exposes it (each None where it does not): cpufreq's governor, current
    and maximum MHz over the CPUs, and /proc/cpuinfo's current "cpu MHz". A run under a powersave governor,
    or with a current clock far below the maximum, was throttled."""
    from runtime.cpu import _read_cpuinfo

    dirs = sorted(root.glob("cpu[0-9]*/cpufreq"))
    governors = sorted({g for d in dirs if (g := _read(d / "scaling_governor"))})
    cur = [int(v) / 1e3 for d in dirs if (v := _read(d / "scaling_cur_freq")) and v.isdigit()]
    top = [int(v) / 1e3 for d in dirs if (v := _read(d / "cpuinfo_max_freq")) and v.isdigit()]
    proc = _cpuinfo_mhz(_read_cpuinfo() if cpuinfo is None else cpuinfo)
    return {
        "governor": ",".join(governors) or None,
        "cur_mhz": max(cur) if cur else None,
        "max_mhz": max(top) if top else None,
        "cpuinfo_mhz": max(proc) if proc else None,
    }


@dataclass(frozen=True)
class Peak:
    """The instruction-set peak of `cores` cores; `rates` in GFLOP/s (GOP/s for int8) per precision."""

    isa: str
    cores: int
    ghz: float
    frequency_source: str
    fma_units: int
    fp32_lanes: int
    ops_per_lane: dict[str, float]  # per precision: operations per lane per instruction, against fp32's 2
    rates: dict[str, float] = field(default_factory=dict)

    def formula(self, precision: str) -> str:
        """How the rate was computed, with its inputs, in one line."""
        return (
            f"{precision} peak {self.rates[precision]:.1f} = {self.cores} cores x {self.ghz:.2f} GHz "
            f"({self.frequency_source}) x {self.fma_units} FMA units x {self.fp32_lanes} fp32 lanes "
            f"x {self.ops_per_lane[precision]:g} ops per lane ({self.isa})"
        )

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["formulas"] = {p: self.formula(p) for p in self.rates}
        return data


def _vector(flags: set[str], machine: str) -> tuple[int, int, str]:
    """(FMA units per core, fp32 lanes per FMA, instruction set name) from the CPU's flags."""
    if machine.lower() in ("aarch64", "arm64"):
        return 4, 4, "NEON"
    if "avx512f" in flags:
        return 2, 16, "AVX-512"
    if "avx2" in flags or "fma" in flags:
        return 2, 8, "AVX2/FMA"
    return 2, 4, "SSE"  # no FMA: a multiply and an add port, 4 lanes each: the same 2 ops per lane and cycle


def _ops_per_lane(flags: set[str], target: str, per_cycle_lanes: int) -> dict[str, float]:
    """Operations per fp32 lane per FMA instruction, by precision (fp32: 2, a multiply and an add).
    `per_cycle_lanes`: FMA units x fp32 lanes, to express AMX's per-core figures the same way."""
    from benchmarks.int8 import INT8_FACTORS

    ops = {"fp32": 2.0, "int8": 2.0 * INT8_FACTORS.get(target, 1.0), "bf16": 2.0, "fp16": 2.0}
    if flags & {"avx512_bf16", "avx512bf16"}:
        ops["bf16"] = 4.0
    if flags & {"avx512_fp16", "avx512fp16", "asimdhp", "fphp"}:
        ops["fp16"] = 4.0
    if "amx_bf16" in flags:  # AMX TMUL: 1024 bf16 multiply-accumulates per cycle and core
        ops["bf16"] = max(ops["bf16"], 2048 / per_cycle_lanes)
    if "amx_int8" in flags:  # 2048 int8 multiply-accumulates per cycle and core
        ops["int8"] = max(ops["int8"], 4096 / per_cycle_lanes)
    return ops


def frequency_ghz(freq: dict[str, Any]) -> tuple[float, str] | None:
    """The highest clock the OS tells of, and where it came from; None if it tells of none."""
    candidates = [(freq.get("max_mhz"), "cpufreq cpuinfo_max_freq"), (freq.get("cpuinfo_mhz"), "/proc/cpuinfo cpu MHz")]
    known = [(mhz, source) for mhz, source in candidates if mhz]
    if not known:
        return None
    mhz, source = max(known)
    return mhz / 1e3, source


def cpu_peak(
    threads: int | None = None, cpuinfo: str | None = None, machine: str | None = None, root: Path = CPUFREQ
) -> Peak | None:
    """This CPU's instruction-set peak for `threads` cores (None: every physical core); None where the
    OS does not tell the clock (then the measured rates alone set the floor)."""
    from benchmarks.machine import physical_cores
    from runtime.cpu import _read_cpuinfo, parse_cpuinfo_flags, target_from_flags

    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    machine = platform.machine() if machine is None else machine
    clock = frequency_ghz(cpu_frequency(root, text))
    if clock is None:
        return None
    flags = parse_cpuinfo_flags(text)
    units, lanes, isa = _vector(flags, machine)
    cores = min(threads, physical_cores()) if threads else physical_cores()
    ops = _ops_per_lane(flags, target_from_flags(flags, machine), units * lanes)
    rates = {p: cores * clock[0] * units * lanes * k for p, k in ops.items()}
    return Peak(isa, cores, clock[0], clock[1], units, lanes, ops, rates)


def _best_measured(limits: Any, precision: str) -> str | None:
    """Which library and size measured `precision`'s best rate ("torch 2048"), over every measurement."""
    tries: dict[str, float] = {}
    for details in limits.details.get("measurements", [limits.details]):
        for name, rate in details.get("matmul", {}).get(precision, {}).items():
            tries[name] = max(rate, tries.get(name, 0.0))
    return max(tries, key=tries.__getitem__) if tries else None


def with_peak(limits: Any, peak: Peak | None) -> Any:
    """`limits` (a `benchmarks.machine.Limits`) with each precision's rate raised to the instruction-set
    peak where that is higher: the floor's rate is an upper bound, whichever figure sets it. The measured
    rates stay in details["measured_gflops"], the peak and its formula in details["peak"]."""
    limits.details["measured_gflops"] = dict(limits.matmul_gflops)
    limits.details["peak"] = peak.to_dict() if peak is not None else None
    for precision, measured in limits.matmul_gflops.items():
        best = _best_measured(limits, precision)
        if peak is None or precision not in peak.rates:
            continue
        rate = max(measured, peak.rates[precision])
        limits.matmul_gflops[precision] = rate
        setter = "the instruction-set peak" if rate > measured else f"measured ({best})"
        limits.notes[f"{precision} rate"] = (
            f"{precision} rate {rate:.1f}: {setter}, the larger of the best measured {measured:.1f} and the "
            f"{peak.formula(precision)}"
        )
    if peak is None:
        limits.notes["peak"] = "no instruction-set peak (the OS tells no clock): the measured rates set the floor"
    return limits


def floor_note(fraction: float | None, bound: str | None) -> str | None:
    """What it means when a row beats its floor (None when it does not): never a speed beyond 100%."""
    if fraction is None or fraction <= 1.0:
        return None
    if bound == "compute":
        return (
            "faster than the nominal-FLOP floor: the algorithm does fewer operations than the model's nominal "
            "FLOPs (e.g. Winograd or FFT convolutions)"
        )
    return "faster than the memory floor: weights partly served from cache, or the bandwidth measured low"
