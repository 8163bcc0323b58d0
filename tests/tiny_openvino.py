"""The committed tiny ONNX model (tests/tiny_onnx.py) as an OpenVINO IR, for the torch-free tests.

Converted by OpenVINO's own ONNX frontend (no onnx package, no torch), with the tiny model's
alexnet-deploy metadata in rt_info["alexnet_deploy"] and, as export/to_openvino.py does, the
SHA-256 of the saved .bin stamped in it by a second save (the .bin does not change).

    tiny.xml: input (N, 3, 8, 8) f32 -> Reshape -> MatMul (3 x 192) -> Add (1 x 3) -> logits (N, 3)
    tiny.bin: the Reshape's i64 shape, the weight, then the bias: its last 12 bytes
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tiny_onnx import SIZE, TINY_ONNX

from runtime.integrity import openvino_sha256
from runtime.metadata import METADATA_KEY


def write_tiny_ir(
    folder: str | Path, *, metadata: bool = True, stamp: bool = True, name: str = "tiny", batch: int | None = None
) -> Path:
    """Write `folder`/`name`.xml and .bin and return the .xml. metadata=False: a foreign IR (no rt_info
    entry of ours); stamp=False: metadata without weights_sha256 (an IR exported before hashes were
    recorded); batch: a fixed-batch IR (the graph and the metadata say `batch`)."""
    import openvino as ov  # here, so that importing this file needs no openvino (the tests skip without it)

    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{name}.xml"
    model = ov.convert_model(str(TINY_ONNX))
    if batch is not None:
        model.reshape([batch, 3, SIZE, SIZE])
    embedded = dataclasses.replace(
        OnnxRuntimeBackend(TINY_ONNX).metadata, format="openvino", input_shape=(batch, 3, SIZE, SIZE)
    )
    if metadata:
        model.set_rt_info(embedded.to_json(), [METADATA_KEY])
    ov.save_model(model, str(xml), compress_to_fp16=False)
    if metadata and stamp:
        digest = openvino_sha256(xml)
        model.set_rt_info(dataclasses.replace(embedded, weights_sha256=digest).to_json(), [METADATA_KEY])
        ov.save_model(model, str(xml), compress_to_fp16=False)
        assert openvino_sha256(xml) == digest, "saving again changed the .bin"
    return xml
