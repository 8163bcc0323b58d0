"""Which int8 instruction set a CPU has: the one place that reads it from the OS.

int8 speed depends on it (onnxruntime's quantization guide, "Quantization on GPU / x86-64 / ARM"):
- ``vnni``: AVX-512 VNNI or AVX-VNNI (VPDPBUSD): one instruction per u8×s8 dot product, no saturation.
- ``avx512`` / ``avx2`` without VNNI: VPMADDUBSW sums pairs of u8×s8 products into int16, which can
  saturate when both are large; onnxruntime's remedies are reduce_range (7-bit weights) or u8u8.
- ``arm64``: NEON (SDOT/UDOT where the core has the dot-product extension).
- ``other``: no fast int8 path known (SSE-only x86, unknown machines): int8 may be slower than fp32.
"""

from __future__ import annotations

import platform
from pathlib import Path

TARGETS = ("vnni", "avx512", "avx2", "arm64", "other")
# What each target means for the exporter and the benchmark's floor table.
DESCRIPTIONS = {
    "vnni": "x86 with VNNI (u8s8 dot products, no saturation)",
    "avx512": "x86 with AVX-512 but no VNNI (VPMADDUBSW: u8s8 pairs may saturate int16)",
    "avx2": "x86 with AVX2 but no VNNI (VPMADDUBSW: u8s8 pairs may saturate int16)",
    "arm64": "64-bit ARM (NEON int8 dot products)",
    "other": "no fast int8 instructions known",
}
CPUINFO = Path("/proc/cpuinfo")
MAX_CPUINFO_BYTES = 4 << 20  # thousands of cores' worth; /proc files report size 0, so read bounded


def target_from_flags(flags: set[str], machine: str) -> str:
    """The int8 target of a CPU with these /proc/cpuinfo flags (x86 "flags", ARM "Features")."""
    machine = machine.lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"}:
        return "vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


def parse_cpuinfo_flags(text: str) -> set[str]:
    """The first processor's flags from /proc/cpuinfo text (x86 "flags :", ARM "Features :")."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def detect_cpu(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """This machine's int8 target (one of TARGETS); `cpuinfo`/`machine` override what the OS says (tests)."""
    machine = machine if machine is not None else platform.machine()
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    return target_from_flags(parse_cpuinfo_flags(cpuinfo), machine)


def _read_cpuinfo() -> str:
    # Linux only; elsewhere (macOS, Windows) the machine name decides: arm64 or "other".
    try:
        with CPUINFO.open("rb") as f:
            return f.read(MAX_CPUINFO_BYTES).decode("ascii", "replace")
    except OSError:
        return ""
