"""The int8 matrix-multiply rate behind the int8 floor.

It is the larger of two figures, because a floor must not be pessimistic:

- measured: onnxruntime's uint8 x int8 MatMulInteger (`benchmarks.ort_matmul`), what MLAS reaches;
- derived: the measured fp32 rate times what the CPU's integer instructions allow per instruction
  against an fp32 FMA of the same width, in theory (INT8_FACTORS; the instruction set comes from
  `runtime.cpu.detect_cpu`). Counting 2 operations per multiply-accumulate, like FLOPs:

  vnni    4x  VPDPBUSD: 4 u8 x s8 products summed into each 32-bit lane, one instruction where fp32 does 1 FMA
  avx512  2x  no VNNI: VPMADDUBSW (u8 x s8 pairs -> s16) then VPMADDWD (-> s32): 4 MACs per lane in 2 instructions
  avx2    2x  the same pair at 256 bits
  arm64   4x  SDOT/UDOT (Armv8.2 dot product): 4 MACs per 32-bit lane; cores without it manage about 2x
  other   1x  no integer advantage assumed (the measured rate still counts)

These are upper bounds: VPMADDUBSW saturates at 16 bits, and real kernels lose time to packing.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.timing import Clock

INT8_FACTORS = {"vnni": 4.0, "avx512": 2.0, "avx2": 2.0, "arm64": 4.0, "other": 1.0}
INSTRUCTIONS = {
    "vnni": "VPDPBUSD",
    "avx512": "VPMADDUBSW+VPMADDWD",
    "avx2": "VPMADDUBSW+VPMADDWD",
    "arm64": "SDOT",
    "other": "no integer SIMD assumed",
}


def instruction_set() -> str:
    """The CPU's integer SIMD level as `runtime` sees it: vnni, avx512, avx2, arm64 or other."""
    from runtime.cpu import detect_cpu

    return detect_cpu()


def int8_note(isa: str) -> str:
    """How the int8 rate was found, for the report (one line)."""
    factor = INT8_FACTORS.get(isa, 1.0)
    return (
        f"int8: the larger of onnxruntime's measured uint8 x int8 MatMulInteger and the fp32 rate x {factor:g} "
        f"({isa}: {INSTRUCTIONS.get(isa, '?')}, the theoretical integer throughput per instruction)"
    )


def measure_int8(
    fp32_gflops: float,
    sizes: tuple[int, ...],
    repeats: int = 3,
    threads: int | None = None,
    clock: Clock = time.perf_counter,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every int8 figure (GOP/s; the rate is their max) and what they rest on, on the CPU."""
    from benchmarks.ort_matmul import measure_matmul_int8_onnxruntime

    isa = instruction_set()
    factor = INT8_FACTORS.get(isa, 1.0)
    rates = {
        f"onnxruntime MatMulInteger {n}": r
        for n, r in measure_matmul_int8_onnxruntime(sizes, repeats, threads, clock).items()
    }
    rates[f"fp32 x {factor:g} ({isa})"] = fp32_gflops * factor
    return rates, {"isa": isa, "factor": factor, "note": int8_note(isa)}
