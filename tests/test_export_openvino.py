"""OpenVINO IR export: fp32 against PyTorch, the metadata and weights hash, all-or-nothing writes, int8 behind the gate."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
from builders import random_batch, reference

pytest.importorskip("openvino", reason="the OpenVINO exporter needs openvino (the [export-openvino] extra)")
pytest.importorskip("nncf", reason="the int8 OpenVINO exporter needs nncf (the [export-openvino] extra)")

import runtime  # noqa: E402 (after the skips: a machine without OpenVINO skips the module)
from export import ExportError, QuantizeOptions, export_artifact, to_openvino, to_openvino_int8  # noqa: E402
from runtime.integrity import IntegrityError, openvino_sha256  # noqa: E402

# Few images: the gate's thresholds are the point here, not its statistics.
FAST = {"calibration": "synthetic", "calibration_size": 16, "gate_size": 40}


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def fp32_layers(xml):
    """The layers of an IR whose weights are a plain fp32 constant ("features.0"), i.e. not quantized."""
    import openvino as ov

    kept = set()
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        weight = op.input_value(1).get_node() if op.get_type_name() in ("Convolution", "MatMul") else None
        if weight is not None and weight.get_type_name() == "Constant":
            kept.add(weight.get_friendly_name().removesuffix(".weight"))
    return kept


@pytest.fixture(scope="module")
def _converted():
    return {}  # (source sha256, input shape) -> the fp32 ov.Model


@pytest.fixture
def converted_once(monkeypatch, _converted):
    """The exporters' fp32 conversion (the ONNX export, ~3 s) made once per checkpoint and input for the
    module's write and gate tests; each export still quantizes, saves, stamps and places on its own."""
    cache = _converted
    real = to_openvino.convert_pytorch

    def convert(model, metadata, folder, **kwargs):
        key = (metadata.source_sha256, metadata.input_shape)
        if key not in cache:
            cache[key] = real(model, metadata, folder, **kwargs)
        return cache[key].clone()

    monkeypatch.setattr(to_openvino, "convert_pytorch", convert)
    monkeypatch.setattr(to_openvino_int8, "convert_pytorch", convert)


@pytest.fixture(scope="module")
def fp32_ir(cifar_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("openvino-fp32")
    return export_artifact(cifar_checkpoint, "openvino", folder / "m.xml")


@pytest.fixture(scope="module")
def int8_ir(cifar_checkpoint, tmp_path_factory):
    """(the int8 IR, the progress lines it printed, (nncf's logger level, sys.stdout) before and after)."""
    folder = tmp_path_factory.mktemp("openvino-int8")
    lines, before = [], (logging.getLogger("nncf").level, sys.stdout)
    options = QuantizeOptions(**FAST)
    out = export_artifact(
        cifar_checkpoint, "openvino", folder / "m.xml", precision="int8", quantize=options, echo=lines.append
    )
    return out, lines, (before, (logging.getLogger("nncf").level, sys.stdout))


def test_fp32_ir_matches_pytorch_and_carries_verified_metadata(fp32_ir, cifar_checkpoint):
    from export.source import Source

    assert names(fp32_ir.parent) == ["m.bin", "m.xml"]
    batch = random_batch(7)
    with runtime.load(fp32_ir, backend="openvino", device="cpu") as predictor:
        logits, metadata = predictor.predict_logits(batch), predictor.metadata
    # compress_to_fp16=False and the backend's f32 hint: the IR computes what PyTorch does.
    np.testing.assert_allclose(logits, reference(cifar_checkpoint, batch), rtol=1e-4, atol=1e-6)
    source = Source.open(cifar_checkpoint)
    assert metadata.format == "openvino" and metadata.precision == "fp32" and metadata.quantization is None
    assert list(metadata.class_names) == source.checkpoint.class_names
    assert metadata.preprocess == source.checkpoint.preprocess and metadata.input_shape == (None, 3, 32, 32)
    assert metadata.source_sha256 == source.sha256
    assert metadata.weights_sha256 == openvino_sha256(fp32_ir)


def test_the_recorded_hash_catches_changed_weights_and_a_fixed_batch_is_kept(fp32_ir, cifar_checkpoint, tmp_path):
    for suffix in (".xml", ".bin"):
        (tmp_path / f"m{suffix}").write_bytes(fp32_ir.with_suffix(suffix).read_bytes())
    weights = bytearray((tmp_path / "m.bin").read_bytes())
    weights[-1] ^= 1
    (tmp_path / "m.bin").write_bytes(bytes(weights))
    with pytest.raises(IntegrityError, match="do not match the SHA-256 recorded"):
        runtime.load(tmp_path / "m.xml")
    out = export_artifact(cifar_checkpoint, "openvino", tmp_path / "b4.xml", batch_size=4)
    with runtime.load(out) as predictor:
        assert predictor.metadata.input_shape == (4, 3, 32, 32) and predictor.predict_logits(random_batch(3)).shape == (
            3,
            5,
        )


def _break_the_save(failure, monkeypatch):
    """Make the next export fail at `failure`; returns the message it fails with."""
    import openvino as ov

    if failure == "weights changed":
        digests = iter(["a" * 64, "b" * 64])
        monkeypatch.setattr(to_openvino, "openvino_sha256", lambda path: next(digests))
        return "wrote different weights on a second save"
    real, calls, failing = ov.save_model, [], 1 if failure == "first save" else 2

    def save_model(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == failing:
            raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1:\nNo space left on device\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(ov, "save_model", save_model)
    return "^OpenVINO could not save model.xml: No space left on device$"


@pytest.mark.parametrize("failure", ["first save", "stamped save", "weights changed"])
def test_a_failed_export_leaves_nothing_and_an_older_ir_untouched(
    failure, fp32_ir, cifar_checkpoint, tmp_path, monkeypatch, converted_once
):
    old = {f"m{suffix}": fp32_ir.with_suffix(suffix).read_bytes() for suffix in (".xml", ".bin")}
    for before in ({}, old):  # no IR there yet; an older IR there
        for name, data in before.items():
            (tmp_path / name).write_bytes(data)
        with pytest.raises(ExportError, match=_break_the_save(failure, monkeypatch)):
            export_artifact(cifar_checkpoint, "openvino", tmp_path / "m.xml")
        assert names(tmp_path) == sorted(before)
        assert all((tmp_path / name).read_bytes() == data for name, data in before.items())


@pytest.mark.parametrize("name", ["m.xml", "m.bin"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_path_that_is_not_a_file_is_refused_before_converting(name, kind, cifar_checkpoint, tmp_path, monkeypatch):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(tmp_path / name) if kind == "fifo" else (tmp_path / name).mkdir()
    from export import write_artifact
    from export.source import Source

    monkeypatch.setattr(to_openvino, "convert_pytorch", lambda *a, **k: pytest.fail("converted"))
    # write_artifact: the exporter's own check (plan_output takes a folder m.xml as where to write model.xml).
    with pytest.raises(ExportError, match=f"{name}: it is a (device or pipe|directory)"):
        write_artifact(Source.open(cifar_checkpoint), "openvino", tmp_path / "m.xml")
    assert names(tmp_path) == [name]


def test_int8_passes_the_gate_records_it_and_is_a_quarter_of_fp32(int8_ir, fp32_ir):
    out, lines, (before, after) = int8_ir
    assert names(out.parent) == ["m.bin", "m.xml"]
    assert lines[0] == "calibrating on 16 images from synthetic train split (seed 0), then gating ..."
    assert lines[1] == "calibrated on 16 images from synthetic train split (seed 0) (minmax, NNCF)"
    assert lines[2].startswith("  gate [all layers int8]: PASS")
    assert before == after  # NNCF quieted for the call only
    with runtime.load(out) as predictor:
        metadata = predictor.metadata
        batch = random_batch(16)
        int8_logits = predictor.predict_logits(batch)
    with runtime.load(fp32_ir) as predictor:
        fp32_logits = predictor.predict_logits(batch)
    assert (int8_logits.argmax(1) == fp32_logits.argmax(1)).mean() >= 0.9
    record = metadata.quantization
    assert metadata.precision == "int8" and metadata.format == "openvino" and metadata.weights_sha256
    assert record["gate"]["passed"] and record["gate"]["images"] == 40 and record["gate"]["step"] == "all layers int8"
    assert record["scheme"]["quantizer"].startswith("nncf ") and record["scheme"]["preset"] == "performance"
    assert record["fp32_layers"] == [] and fp32_layers(out) == set()
    source = "synthetic train split (seed 0)"
    assert record["calibration"] == {"method": "minmax", "images": 16, "skipped": 0, "source": source}
    # int8 weights (1 byte) instead of fp32 (4): the .bin shrinks to about a quarter.
    assert out.with_suffix(".bin").stat().st_size <= 0.3 * fp32_ir.with_suffix(".bin").stat().st_size


def _scratch_root(tmp_path, monkeypatch):
    import tempfile

    root = tmp_path / "scratch"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_a_gate_that_cannot_pass_writes_nothing_unless_forced(cifar_checkpoint, tmp_path, monkeypatch, converted_once):
    real_run = to_openvino_int8.run_ir
    monkeypatch.setattr(to_openvino_int8, "run_ir", lambda path, inputs: -real_run(path, inputs))
    scratch, out = _scratch_root(tmp_path, monkeypatch), tmp_path / "out" / "m.xml"
    out.parent.mkdir()
    options = QuantizeOptions(**FAST, max_fp32_layers=0)
    with pytest.raises(ExportError, match="fails the accuracy gate at every step.*agreement 0.00%.*nothing written"):
        export_artifact(cifar_checkpoint, "openvino", out, precision="int8", quantize=options, echo=lambda s: None)
    assert names(out.parent) == [] and names(scratch) == []
    lines = []
    forced = QuantizeOptions(**FAST, max_fp32_layers=0, force=True)
    export_artifact(cifar_checkpoint, "openvino", out, precision="int8", quantize=forced, echo=lines.append)
    assert "written anyway because of --force" in lines[-1] and names(out.parent) == ["m.bin", "m.xml"]
    with runtime.load(out) as predictor:
        gate = predictor.metadata.quantization["gate"]
    assert gate["passed"] is False and gate["forced"] is True and names(scratch) == []


def test_fallback_keeps_the_sensitive_layer_in_fp32_and_records_it(
    cifar_checkpoint, tmp_path, monkeypatch, converted_once
):
    """features.0 is made sensitive on purpose: while it is quantized, a fifth of the outputs flip.
    The fallback must find it, keep it (alone) in fp32, pass, and say so in the metadata."""
    real_run, real_names = to_openvino_int8.run_ir, to_openvino_int8.layer_names

    def run_with_sensitive_conv1(path, inputs):
        logits = real_run(path, inputs)
        if "features.0" not in fp32_layers(path):
            logits[::5] = -logits[::5]  # the top class becomes the last
        return logits

    def three_layers(model):  # three candidates instead of eight: the same search in half the time
        return {
            op: name for op, name in real_names(model).items() if name in ("classifier.6", "features.0", "features.2")
        }

    monkeypatch.setattr(to_openvino_int8, "run_ir", run_with_sensitive_conv1)
    monkeypatch.setattr(to_openvino_int8, "layer_names", three_layers)
    lines, out = [], tmp_path / "m.xml"
    options = QuantizeOptions(**FAST, max_agreement_loss=0.05)
    export_artifact(cifar_checkpoint, "openvino", out, precision="int8", quantize=options, echo=lines.append)
    assert lines[2].startswith("  gate [all layers int8]: FAIL") and "measuring the sensitivity of 3 layers" in lines[3]
    assert lines[-1].startswith("  gate [features.0 in fp32]: PASS")
    with runtime.load(out) as predictor:
        record = predictor.metadata.quantization
    assert record["fp32_layers"] == ["features.0"] and record["gate"]["step"] == "features.0 in fp32"
    assert fp32_layers(out) == {"features.0"} and names(tmp_path) == ["m.bin", "m.xml"]
