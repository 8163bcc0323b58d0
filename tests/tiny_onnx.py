"""A tiny classifier in ONNX with alexnet-deploy metadata: the torch-free tests' model.

tests/data/tiny.onnx is this model, committed so that the runtime's tests run in an edge
install (numpy, Pillow, onnxruntime; no torch, no onnx). test_runtime_edge.py checks that
the committed file is what `build_tiny_onnx` makes. Regenerate with
``.venv/bin/python tests/tiny_onnx.py`` after changing the metadata schema.

    input (N, 3, 8, 8) float32 -> Flatten -> Gemm(192 -> 3) -> logits (N, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.preprocess import PreprocessSpec

TINY_ONNX = Path(__file__).parent / "data" / "tiny.onnx"
CLASS_NAMES = ("circle", "square", "star")
SIZE = 8


def tiny_weights() -> tuple[np.ndarray, np.ndarray]:
    """(W (192, 3), b (3,)) float32, fixed by the seed."""
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((3 * SIZE * SIZE, len(CLASS_NAMES))).astype(np.float32),
        rng.standard_normal(len(CLASS_NAMES)).astype(np.float32),
    )


def tiny_metadata() -> ArtifactMetadata:
    return ArtifactMetadata(
        class_names=CLASS_NAMES,
        preprocess=PreprocessSpec(resize=SIZE, crop=SIZE),
        model_config={},
        input_shape=(None, 3, SIZE, SIZE),
        format="onnx",
    )


def reference_logits(batch: np.ndarray) -> np.ndarray:
    """What the model computes, in numpy: (N, 3, 8, 8) -> (N, 3)."""
    weight, bias = tiny_weights()
    return batch.reshape(len(batch), -1) @ weight + bias


def build_tiny_onnx() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = tiny_weights()
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(CLASS_NAMES)])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    helper.set_model_props(model, {METADATA_KEY: tiny_metadata().to_json()})
    return model.SerializeToString()


if __name__ == "__main__":
    TINY_ONNX.write_bytes(build_tiny_onnx())
    print(f"wrote {TINY_ONNX}")
