"""The openvino runtime backend without torch (issue 27): an IR made from the committed tiny ONNX
by OpenVINO's own converter, run by runtime.load and alexnet-run, and every bad input refused in
one line. Marked `runtime`: make test-edge runs it in the torch-free venv (base + [openvino])."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import CLASS_NAMES, SIZE, TINY_ONNX, reference_logits

import runtime
from runtime import DeployError, formats
from runtime.backends import BackendUnavailableError, ModelLoadError
from runtime.cli import main as run_main
from runtime.integrity import IntegrityError, openvino_sha256
from runtime.metadata import METADATA_KEY, MetadataError

pytestmark = pytest.mark.runtime
ov = pytest.importorskip("openvino", reason="the openvino backend needs openvino (the [openvino] extra)")


def write_ir(folder, *, metadata=True, name="tiny"):
    """tests/data/tiny.onnx as an IR with its metadata in rt_info, stamped with the .bin's SHA-256 as
    export stamps it (export/to_openvino.py); metadata=False: a foreign IR."""
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{name}.xml"
    model = ov.convert_model(str(TINY_ONNX))
    embedded = dataclasses.replace(OnnxRuntimeBackend(TINY_ONNX).metadata, format="openvino")
    for stamp in (False, True) if metadata else (False,):
        if metadata:
            digest = openvino_sha256(xml) if stamp else ""
            model.set_rt_info(dataclasses.replace(embedded, weights_sha256=digest).to_json(), [METADATA_KEY])
        ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    return write_ir(tmp_path_factory.mktemp("ir"))


def one_line_error(exc_info, *words):
    message = str(exc_info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_an_ir_runs_on_openvino_with_its_metadata_and_any_batch(ir):
    rng = np.random.default_rng(1)
    with runtime.load(ir, device="cpu", threads=1) as predictor:
        assert predictor.backend_name == "openvino" and predictor.metadata.class_names == CLASS_NAMES
        assert predictor.backend.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
        for n in (1, 5, 17):  # the batch stays dynamic: one compiled model for every size
            batch = rng.standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)
            np.testing.assert_allclose(predictor.predict_logits(batch), reference_logits(batch), rtol=1e-5, atol=1e-5)


def test_alexnet_run_on_an_ir(ir, tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(image)
    result = CliRunner().invoke(run_main, ["-m", str(ir), "--json", "--topk", "1", str(image)])
    assert result.exit_code == 0, result.output
    assert str(image) in result.output and any(name in result.output for name in CLASS_NAMES)


def test_an_ir_without_our_metadata_runs_with_labels(tmp_path):
    foreign = write_ir(tmp_path, metadata=False)
    with pytest.raises(MetadataError) as exc_info:
        runtime.load(foreign)
    one_line_error(exc_info, "--labels")
    with runtime.load(foreign, labels=["a", "b", "c"], image_size=SIZE) as predictor:
        batch = np.zeros((2, 3, SIZE, SIZE), np.float32)
        assert predictor.metadata.class_names == ("a", "b", "c")
        np.testing.assert_allclose(predictor.predict_logits(batch), reference_logits(batch), rtol=1e-5, atol=1e-5)


def copy_ir(ir, folder):
    folder.mkdir()
    for suffix in (".xml", ".bin"):
        shutil.copy(ir.with_suffix(suffix), folder / f"m{suffix}")
    return folder / "m.xml"


def test_a_missing_bin(ir, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelLoadError) as exc_info:
        runtime.load(xml)
    one_line_error(exc_info, "m.bin is missing")


@pytest.mark.parametrize("verify", [True, False])
def test_a_truncated_bin(ir, tmp_path, verify):
    xml = copy_ir(ir, tmp_path / "m")
    weights = xml.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DeployError) as exc_info:
        runtime.load(xml, verify=verify)  # unverified: OpenVINO's own range check, its C++ trace cut
    one_line_error(exc_info, str(xml))
    assert "Exception from" not in str(exc_info.value) and (verify or "Incorrect weights" in str(exc_info.value))


def test_a_bin_swapped_for_another_models(ir, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    weights = xml.with_suffix(".bin")
    other = bytearray(weights.read_bytes())
    other[-4:] = np.float32(0.5).tobytes()  # another model of the same shape: its last weight differs
    weights.write_bytes(bytes(other))
    with pytest.raises(IntegrityError) as exc_info:
        runtime.load(xml)
    one_line_error(exc_info, "do not match the SHA-256 recorded at export")
    with runtime.load(xml, verify=False):  # --no-verify: the same-sized weights load
        pass


def test_a_bin_pointing_outside_the_models_folder(ir, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    outside = tmp_path / "elsewhere.bin"
    xml.with_suffix(".bin").rename(outside)
    xml.with_suffix(".bin").symlink_to(outside)
    with pytest.raises(ModelLoadError) as exc_info:
        runtime.load(xml)
    one_line_error(exc_info, "outside the model's folder")


@pytest.mark.timeout(30)
def test_a_bin_that_is_a_fifo_is_refused_without_blocking(ir, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    xml.with_suffix(".bin").unlink()
    os.mkfifo(xml.with_suffix(".bin"))
    with pytest.raises(ModelLoadError) as exc_info:
        runtime.load(xml)
    one_line_error(exc_info, "FIFO")


@pytest.mark.parametrize(
    ("text", "words"),
    [(None, "corrupt XML"), (b"<?xml version='1.0'?><html></html>", "not <net>"), (b"", "corrupt XML")],
)
def test_a_corrupt_xml(ir, tmp_path, text, words):
    xml = copy_ir(ir, tmp_path / "m")
    xml.write_bytes(xml.read_bytes()[:200] if text is None else text)
    with pytest.raises(ModelLoadError) as exc_info:
        runtime.load(xml)
    one_line_error(exc_info, "not an OpenVINO IR", words)
    result = CliRunner().invoke(run_main, ["-m", str(xml), str(xml)])
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "not an OpenVINO IR" in result.output


def test_an_xml_folder_and_another_device(ir, tmp_path):
    (tmp_path / "d.xml").mkdir()
    with pytest.raises(ModelLoadError) as exc_info:
        runtime.load(tmp_path / "d.xml", backend="openvino")
    one_line_error(exc_info, "directory")
    with pytest.raises(BackendUnavailableError) as exc_info:
        runtime.load(ir, device="cuda")
    one_line_error(exc_info, "--device cuda")


def test_the_format_table_sends_xml_to_openvino():
    assert formats.for_suffix(".xml").backend == "openvino" and ".xml" in formats.runnable_suffixes()
