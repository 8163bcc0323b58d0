"""The tiny classifier of tests/tiny_onnx.py as a LiteRT (.tflite) model, for the torch-free tests.

Built here with the TFLite schema's object API (ai_edge_litert, no converter, no torch), the
batch fixed in the file as litert-torch fixes it, and stamped as export/to_litert.py stamps:
weights_sha256 = buffers_sha256 of the bytes before the metadata entry is added.

    float: input (B, 3, 8, 8) f32 -> RESHAPE (B, 192) -> FULLY_CONNECTED (W^T: 3 x 192, b: 3) -> (B, 3) f32
    int8:  the same graph in full-integer int8 (int8 input and output, int8 weights, int32 bias),
           with nonzero zero points on the input and output, as a PT2E export has
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tiny_onnx import CLASS_NAMES, SIZE, reference_logits, tiny_weights

from runtime.metadata import ArtifactMetadata
from runtime.preprocess import PreprocessSpec
from runtime.tflite_model import add_metadata, buffers_sha256, schema

FEATURES = 3 * SIZE * SIZE
# (scale, zero point) of the int8 model's input and output: the input spans about -4.3..4.7, the
# logits about -53..49 (the tiny model's range on standard-normal inputs).
INPUT_QUANT = (0.035, -6)
OUTPUT_QUANT = (0.4, 5)

__all__ = ["CLASS_NAMES", "SIZE", "build_tiny_tflite", "int8_reference_logits", "reference_logits", "write_tiny_tflite"]


def tiny_metadata(batch: int, int8: bool) -> ArtifactMetadata:
    return ArtifactMetadata(
        class_names=CLASS_NAMES,
        preprocess=PreprocessSpec(resize=SIZE, crop=SIZE),
        model_config={},
        input_shape=(batch, 3, SIZE, SIZE),
        precision="int8" if int8 else "fp32",
        format="litert",
    )


def weight_scale() -> float:
    return float(np.abs(tiny_weights()[0]).max() / 127)


def quantized_weights() -> tuple[np.ndarray, np.ndarray]:
    """The int8 model's (W^T (3, 192) int8, b (3,) int32), symmetric per tensor as TFLite wants."""
    weight, bias = tiny_weights()
    w_scale = weight_scale()
    q_weight = np.clip(np.rint(weight.T / w_scale), -127, 127).astype(np.int8)
    return q_weight, np.rint(bias / (INPUT_QUANT[0] * w_scale)).astype(np.int32)


def int8_reference_logits(batch: np.ndarray) -> np.ndarray:
    """What the int8 model computes, in numpy (TFLite requantizes in fixed point: at most one output step apart)."""
    (s_in, z_in), (s_out, z_out) = INPUT_QUANT, OUTPUT_QUANT
    q_in = np.clip(np.rint(batch.reshape(len(batch), -1) / s_in) + z_in, -128, 127)
    q_weight, q_bias = quantized_weights()
    acc = (q_in - z_in).astype(np.int64) @ q_weight.T.astype(np.int64) + q_bias
    q_out = np.clip(np.rint(acc * (s_in * weight_scale() / s_out)) + z_out, -128, 127)
    return ((q_out - z_out) * s_out).astype(np.float32)


def _tensor(fb, name, shape, kind, buffer=0, quant=None):
    tensor = fb.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, list(shape), kind, buffer
    if quant is not None:
        tensor.quantization = fb.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [float(quant[0])], [int(quant[1])]
    return tensor


def _operator(fb, opcode, inputs, outputs, options_type, options):
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _constants(fb, batch: int, int8: bool) -> tuple[list, list]:
    """(buffers, the constant tensors 1..3: shape, weights, bias); buffer 0 is the empty sentinel."""
    if int8:
        (weight, bias), w_scale = quantized_weights(), weight_scale()
        w_type, b_type = fb.TensorType.INT8, fb.TensorType.INT32
        w_quant, b_quant = (w_scale, 0), (INPUT_QUANT[0] * w_scale, 0)  # TFLite's int8 FC: these exact scales
    else:
        weight, bias = tiny_weights()[0].T, tiny_weights()[1]  # FULLY_CONNECTED's weights are (out, in)
        w_type, b_type, w_quant, b_quant = fb.TensorType.FLOAT32, fb.TensorType.FLOAT32, None, None
    datas = [np.int32([batch, FEATURES]), np.ascontiguousarray(weight), bias]
    buffers = [fb.BufferT()] + [fb.BufferT(data=np.frombuffer(d.tobytes(), np.uint8)) for d in datas]
    tensors = [
        _tensor(fb, "shape", [2], fb.TensorType.INT32, 1),
        _tensor(fb, "weight", weight.shape, w_type, 2, w_quant),
        _tensor(fb, "bias", bias.shape, b_type, 3, b_quant),
    ]
    return buffers, tensors


def build_tiny_tflite(*, batch: int = 2, int8: bool = False, metadata: bool = True, stamp: bool = True) -> bytes:
    """The .tflite bytes. metadata=False: a foreign model (no entry of ours); stamp=False: metadata
    without weights_sha256 (as exported before hashes were recorded)."""
    from ai_edge_litert.tools import flatbuffer_utils

    fb = schema()
    io_type = fb.TensorType.INT8 if int8 else fb.TensorType.FLOAT32
    in_quant, out_quant = (INPUT_QUANT, OUTPUT_QUANT) if int8 else (None, None)
    buffers, constants = _constants(fb, batch, int8)
    reshape, fully_connected = fb.ReshapeOptionsT(), fb.FullyConnectedOptionsT()
    reshape.newShape = [batch, FEATURES]
    graph = fb.SubGraphT()
    graph.name, graph.inputs, graph.outputs = "main", [0], [5]
    graph.tensors = [
        _tensor(fb, "input", (batch, 3, SIZE, SIZE), io_type, 0, in_quant),
        *constants,
        _tensor(fb, "flat", (batch, FEATURES), io_type, 0, in_quant),
        _tensor(fb, "logits", (batch, len(CLASS_NAMES)), io_type, 0, out_quant),
    ]
    graph.operators = [
        _operator(fb, 0, [0, 1], [4], fb.BuiltinOptions.ReshapeOptions, reshape),
        _operator(fb, 1, [4, 2, 3], [5], fb.BuiltinOptions.FullyConnectedOptions, fully_connected),
    ]
    codes = []
    for code in (fb.BuiltinOperator.RESHAPE, fb.BuiltinOperator.FULLY_CONNECTED):
        codes.append(fb.OperatorCodeT())
        codes[-1].builtinCode, codes[-1].deprecatedBuiltinCode, codes[-1].version = code, code, 1
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [graph], buffers
    model.description = "alexnet-deploy tests: tiny classifier"
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if not metadata:
        return data
    embedded = tiny_metadata(batch, int8)
    if stamp:
        embedded = dataclasses.replace(embedded, weights_sha256=buffers_sha256(data))
    return add_metadata(data, embedded.to_json())


def write_tiny_tflite(path: str | Path, **options) -> Path:
    """Write build_tiny_tflite(**options) to `path` (a .tflite file; its folder is made) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_tiny_tflite(**options))
    return path
