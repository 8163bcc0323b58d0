"""Matrix-multiply rates through onnxruntime's MLAS GEMMs: the kernels its convolutions and
(quantized) linear layers run on. fp32 MatMul and int8 MatMulInteger; {} without onnxruntime/onnx.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.timing import Clock, best_seconds


def _session(nodes: list[Any], inputs: list[Any], output: Any, initializers: list[Any], threads: int | None) -> Any:
    import onnxruntime as ort
    from onnx import helper

    graph = helper.make_graph(nodes, "matmul", inputs, [output], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime releases too
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure_matmul_onnxruntime(
    sizes: tuple[int, ...],
    repeats: int = 3,
    threads: int | None = None,
    clock: Clock = time.perf_counter,
) -> dict[int, float]:
    """GFLOP/s of an fp32 (n x n) @ (n x n) MatMul for each n: 2 n^3 / seconds."""
    try:
        import numpy as np
        from onnx import TensorProto, helper
    except ImportError:
        return {}
    rates = {}
    for n in sizes:
        session = _session(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n]),
            [],
            threads,
        )
        rng = np.random.default_rng(0)
        feed = {x: rng.standard_normal((n, n), dtype=np.float32) for x in ("a", "b")}
        rates[n] = 2 * n**3 / best_seconds(lambda: session.run(None, feed), lambda: None, repeats, clock) / 1e9
    return rates


def measure_matmul_int8_onnxruntime(
    sizes: tuple[int, ...],
    repeats: int = 3,
    threads: int | None = None,
    clock: Clock = time.perf_counter,
) -> dict[int, float]:
    """GOP/s (2 per multiply-accumulate) of a uint8 (n x n) @ int8 (n x n) MatMulInteger -> int32.

    uint8 activations times int8 weights is the pair onnxruntime's quantized convolutions and
    linear layers use; the weights are an initializer, so MLAS prepacks them as it does in a model.
    """
    try:
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return {}
    rng = np.random.default_rng(0)
    rates = {}
    for n in sizes:
        weights = numpy_helper.from_array(rng.integers(-128, 128, (n, n), dtype=np.int8), "b")
        session = _session(
            [helper.make_node("MatMulInteger", ["a", "b"], ["c"])],
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
            helper.make_tensor_value_info("c", TensorProto.INT32, [n, n]),
            [weights],
            threads,
        )
        feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8)}
        rates[n] = 2 * n**3 / best_seconds(lambda: session.run(None, feed), lambda: None, repeats, clock) / 1e9
    return rates
