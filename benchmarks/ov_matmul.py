"""OpenVINO's fp32 matrix-multiply rate, measured in a process of its own.

OpenVINO's CPU plugin is one of the libraries a floor must not be beaten by (its convolutions ran
above the rate torch, numpy and onnxruntime measured). It runs in a spawned process: its thread pool
and plugin state must not stay behind in the benchmark's parent, whose workers are timed next.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.timing import CLOCKS, best_seconds
from runtime.signal_stack import kept_signal_stack

TIMEOUT_S = 300.0  # the whole measurement, OpenVINO's import and compilation included


def measure_matmul_openvino(
    sizes: tuple[int, ...], repeats: int = 3, threads: int | None = None, clock: str = "wall"
) -> dict[int, float]:
    """GFLOP/s of an fp32 (n x n) @ (n x n) MatMul in OpenVINO for each n ({} without OpenVINO, or if it
    failed: the other libraries' rates still count)."""
    from benchmarks.isolation import run_isolated

    return run_isolated(f"{__name__}:_measure", (tuple(sizes), repeats, threads, clock), TIMEOUT_S) or {}


def _measure(sizes: tuple[int, ...], repeats: int, threads: int | None, clock: str) -> dict[int, float]:
    """In the spawned process: the weights a constant (as in a model), f32 inference precision (not bf16)."""
    try:
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        return {}
    core, rng, rates = ov.Core(), np.random.default_rng(0), {}
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    for n in sizes:
        a = ops.parameter([n, n], np.float32, name="a")
        b = ops.constant(rng.standard_normal((n, n), dtype=np.float32))
        model = ov.Model([ops.matmul(a, b, False, False)], [a], "matmul")
        with kept_signal_stack():  # runtime/signal_stack.py: the CPU plugin replaces it
            request = core.compile_model(model, "CPU", config).create_infer_request()
        request.set_input_tensor(ov.Tensor(rng.standard_normal((n, n), dtype=np.float32)))
        seconds = best_seconds(
            request.infer, lambda: None, repeats, CLOCKS[clock] if clock in CLOCKS else time.perf_counter
        )
        rates[n] = 2 * n**3 / seconds / 1e9
    return rates
