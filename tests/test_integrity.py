"""Integrity at load (issue 26, item 10): every export records the SHA-256 of its weights and
runtime.load refuses a copy whose weights changed, even by one low bit (a change under fp16
noise, which comparing predictions cannot catch). The torch-free half is test_integrity_edge.py.

Each test changes a copy of the session's small exports (conftest.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import build_tiny_onnx

import runtime
from export import export_artifact
from export.quantize import QuantizeOptions
from runtime import DeployError, MetadataError, ModelLoadError
from runtime.cli import main
from runtime.integrity import IntegrityError, onnx_sha256, weights_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata

FIXTURES = {"onnx": "cifar_onnx", "torchscript": "cifar_torchscript", "coreml": "cifar_coreml_fp16"}
COREML_WEIGHTS = "Data/com.apple.CoreML/weights/weight.bin"


@pytest.fixture(params=list(FIXTURES))
def artifact(request, tmp_path):
    """(format, a copy of that format's export in tmp_path)."""
    source = request.getfixturevalue(FIXTURES[request.param])
    target = tmp_path / source.name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return request.param, target


def weights_span(fmt, path):
    """(file, offset, length) of the artifact's largest weight tensor's bytes."""
    if fmt == "coreml":
        weights = path / COREML_WEIGHTS
        return weights, 0, weights.stat().st_size  # blob headers are 64 bytes; its middle is a weight
    if fmt == "onnx":
        content = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    else:
        with zipfile.ZipFile(path) as archive:
            content = archive.read(max(archive.infolist(), key=lambda i: i.file_size))
    offset = path.read_bytes().find(content)
    assert offset > 0
    return path, offset, len(content)


def flip_low_bit(fmt, path):
    """One byte's lowest bit, in the middle of the largest weight: the file stays well formed."""
    file, offset, length = weights_span(fmt, path)
    data = bytearray(file.read_bytes())
    data[offset + length // 2] ^= 1
    file.write_bytes(bytes(data))


def refused(path):
    with pytest.raises(IntegrityError) as caught:
        runtime.load(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def test_every_export_records_the_hash_the_runtime_computes(artifact):
    fmt, path = artifact
    with runtime.load(path) as predictor:
        recorded = predictor.metadata.weights_sha256
    assert len(recorded) == 64 and recorded == weights_sha256(fmt, path)


def test_one_flipped_weight_bit_is_refused_and_verify_false_loads_it(artifact):
    fmt, path = artifact
    flip_low_bit(fmt, path)
    message = refused(path)
    # TorchScript: zipfile's CRC-32 of the entry catches it first; the others by the recorded hash.
    assert ("is damaged" if fmt == "torchscript" else "do not match the SHA-256 recorded at export") in message
    with runtime.load(path, verify=False) as predictor:
        assert np.isfinite(predictor.predict_logits(np.zeros((1, 3, 32, 32), np.float32))).all()


def test_a_torchscript_entry_rewritten_with_a_valid_crc_is_refused(cifar_torchscript, tmp_path):
    """A tampered archive whose zip checksums were redone: only the recorded hash tells."""
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(cifar_torchscript) as source, zipfile.ZipFile(path, "w") as target:
        largest = max(source.infolist(), key=lambda i: i.file_size)
        for info in source.infolist():
            data = bytearray(source.read(info))
            if info is largest:
                data[len(data) // 2] ^= 1
            target.writestr(info, bytes(data))
    assert "do not match the SHA-256 recorded at export" in refused(path)


def test_a_truncated_copy_fails_naming_it(artifact):
    fmt, path = artifact
    file, offset, length = weights_span(fmt, path)
    with open(file, "r+b") as handle:
        handle.truncate(offset + length // 2)
    with pytest.raises(DeployError) as caught:
        runtime.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_an_untouched_artifact_needs_no_extra_option(artifact):
    _fmt, path = artifact
    with runtime.load(path) as predictor:
        assert predictor.metadata.num_classes == 5


@pytest.mark.parametrize("fmt", ["onnx", "coreml"])
def test_int8_exports_record_the_hash_of_what_they_hold(cifar_checkpoint, tmp_path, fmt):
    """int8 ONNX is quantized from an fp32 export: that one's hash must not be carried over."""
    options = QuantizeOptions(calibration="synthetic", force=True)
    path = export_artifact(cifar_checkpoint, fmt, tmp_path, precision="int8", quantize=options, echo=lambda _: None)
    with runtime.load(path) as predictor:
        assert predictor.metadata.precision == "int8"
        assert predictor.metadata.weights_sha256 == weights_sha256(fmt, path)


def without_hash(path):
    """The ONNX file as exported before hashes were recorded: the same metadata without weights_sha256."""
    proto = onnx.load(str(path))
    [entry] = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    data = json.loads(entry.value)
    del data["weights_sha256"]
    entry.value = json.dumps(data)
    onnx.save(proto, str(path))


def test_an_artifact_exported_before_hashes_still_loads(cifar_onnx, tmp_path):
    path = shutil.copy(cifar_onnx, tmp_path / "old.onnx")
    without_hash(path)
    flip_low_bit("onnx", path)  # nothing recorded, so nothing to compare it with
    with runtime.load(path) as predictor:
        assert predictor.metadata.weights_sha256 == ""


def picture(tmp_path):
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "x.png")
    return str(tmp_path / "x.png")


def test_alexnet_run_exits_1_with_one_line_and_no_verify_skips_the_check(cifar_onnx, tmp_path):
    path = shutil.copy(cifar_onnx, tmp_path / "model.onnx")
    flip_low_bit("onnx", path)
    result = CliRunner().invoke(main, ["--model", str(path), picture(tmp_path)])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and str(path) in errors[0], result.output
    result = CliRunner().invoke(main, ["--model", str(path), "--no-verify", picture(tmp_path)])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(importlib.util.find_spec("kserve") is None, reason="alexnet-serve needs kserve ([serve])")
def test_alexnet_serve_refuses_a_damaged_model_with_exit_1(cifar_onnx, tmp_path, free_port):
    path = shutil.copy(cifar_onnx, tmp_path / "model.onnx")
    flip_low_bit("onnx", path)
    # Its own process: kserve and tritonclient cannot share one (runtime/server). Without the check
    # the server would start serving, and the timeout fail the test.
    args = [str(path), "--http-port", str(free_port), "--no-grpc"]
    code = f"from runtime.server.cli import main; main({args!r}, prog_name='alexnet-serve')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(errors) == 1 and str(path) in errors[0], done.stderr


def external_data_model(folder, location="weights.bin"):
    """The tiny classifier with its initializers in `location`, and the hash the runtime computes recorded."""
    path = folder / "tiny.onnx"
    onnx.save_model(
        onnx.load_from_string(build_tiny_onnx()),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    proto = onnx.load(str(path), load_external_data=False)
    [entry] = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    stamped = dataclasses.replace(ArtifactMetadata.from_json(entry.value), weights_sha256=onnx_sha256(path))
    entry.value = stamped.to_json()
    onnx.save_model(proto, str(path))  # metadata_props is outside the graph: the hash still holds
    return path


def test_onnx_external_data_is_part_of_the_hash(tmp_path):
    path = external_data_model(tmp_path)
    with runtime.load(path) as predictor:
        assert predictor.metadata.num_classes == 3
    data = bytearray((tmp_path / "weights.bin").read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "weights.bin").write_bytes(bytes(data))
    assert "do not match the SHA-256" in refused(path)


@pytest.mark.parametrize("outside", ["../outside.bin", "absolute"])
def test_onnx_external_data_outside_the_model_folder_is_never_read(tmp_path, outside):
    (tmp_path / "model").mkdir()
    path = external_data_model(tmp_path / "model")
    shutil.move(tmp_path / "model" / "weights.bin", tmp_path / "outside.bin")
    location = str(tmp_path / "outside.bin") if outside == "absolute" else outside
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(proto, str(path))
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        onnx_sha256(path)
    with pytest.raises(ModelLoadError):  # onnxruntime refuses it too, first
        runtime.load(path)


@pytest.mark.parametrize("value", ["abc", "A" * 64, "g" * 64, 7, None, ["0" * 64]])
def test_a_malformed_weights_hash_is_a_metadata_error(value):
    data = ArtifactMetadata.from_json(onnx.load_from_string(build_tiny_onnx()).metadata_props[0].value).to_dict()
    with pytest.raises(MetadataError, match="weights_sha256"):
        ArtifactMetadata.from_dict(data | {"weights_sha256": value})
    assert ArtifactMetadata.from_dict(data | {"weights_sha256": "0" * 64}).weights_sha256 == "0" * 64
    assert "weights_sha256" not in data  # unstamped metadata serializes as it did before the field
