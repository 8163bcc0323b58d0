"""Exported TorchScript / ONNX / Core ML artifacts against the PyTorch model they came from."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from builders import CLASSES, assert_agrees, random_batch, reference

import alexnet
import runtime
from alexnet.checkpoint import load_checkpoint
from alexnet.model import AlexNet, AlexNetConfig
from export import export_artifact
from export.common import SUFFIXES, ExportError
from export.validate import coreml_problems, validate_artifact
from runtime.fileio import file_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata
from runtime.preprocess import PreprocessSpec


@pytest.fixture(scope="module")
def ckpt(cifar_checkpoint):
    return cifar_checkpoint  # the session's (conftest.py): read-only here


@pytest.fixture(scope="module")
def artifacts(ckpt, cifar_torchscript, cifar_onnx, tmp_path_factory):
    """One export of each kind the tests share (the ONNX ones take ~10 s each): the dynamic-batch
    ones are the session's, written beside the checkpoint; the fixed-batch ones are this module's."""
    out = tmp_path_factory.mktemp("export-fixed")
    return {
        "ts": cifar_torchscript,
        "ts3": export_artifact(ckpt, "torchscript", out / "fixed3.pt", batch_size=3),
        "onnx": cifar_onnx,
        "onnx3": export_artifact(ckpt, "onnx", out / "fixed3.onnx", batch_size=3),
    }


def test_default_outputs_beside_checkpoint(ckpt, artifacts):
    assert artifacts["ts"] == ckpt.with_suffix(".pt") and artifacts["onnx"] == ckpt.with_suffix(".onnx")
    assert not [p for p in ckpt.parent.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("key", ["ts", "onnx"])
@pytest.mark.parametrize("n", [1, 7])
def test_dynamic_batch_matches_pytorch(ckpt, artifacts, key, n):
    batch = random_batch(n, seed=n)
    with runtime.load(artifacts[key], device="cpu") as predictor:
        assert predictor.metadata.batch_size is None
        got = predictor.backend.run(batch)  # straight to the engine: no batching help from the predictor
    assert_agrees(got, reference(ckpt, batch))


@pytest.mark.parametrize("key", ["ts3", "onnx3"])
def test_fixed_batch_matches_pytorch(ckpt, artifacts, key):
    batch = random_batch(3)
    with runtime.load(artifacts[key], device="cpu") as predictor:
        assert predictor.metadata.input_shape == (3, 3, 32, 32)
        assert_agrees(predictor.backend.run(batch), reference(ckpt, batch))


def test_onnx_graph_declares_names_and_dynamic_batch(artifacts):
    import onnx

    model = onnx.load(str(artifacts["onnx"]))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]
    fixed = onnx.load(str(artifacts["onnx3"])).graph.input[0].type.tensor_type.shape.dim
    assert fixed[0].dim_value == 3
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_onnx_reference_evaluator_agrees(ckpt, artifacts):
    from onnx.reference import ReferenceEvaluator

    batch = random_batch(1, seed=5)
    (got,) = ReferenceEvaluator(str(artifacts["onnx"])).run(None, {"input": batch})
    assert_agrees(np.asarray(got), reference(ckpt, batch))


@pytest.mark.parametrize("key,fmt", [("ts", "torchscript"), ("onnx", "onnx")])
def test_metadata_round_trips(ckpt, artifacts, key, fmt):
    with runtime.load(artifacts[key], device="cpu") as predictor:
        meta = predictor.metadata
    assert meta.format == fmt and meta.class_names == tuple(CLASSES)
    assert meta.preprocess == PreprocessSpec(resize=32, crop=32)
    assert meta.input_shape == (None, 3, 32, 32) and meta.precision == "fp32"
    assert meta.model_config["variant"] == "cifar" and meta.source_sha256 == file_sha256(ckpt)
    assert meta.package_version == alexnet.__version__ and meta.torch_version == torch.__version__


def test_torchscript_is_frozen_with_extra_file(artifacts):
    extra = {f"{METADATA_KEY}.json": ""}
    module = torch.jit.load(str(artifacts["ts"]), _extra_files=extra)
    assert list(module.parameters()) == []  # freeze turned the weights into constants
    assert ArtifactMetadata.from_json(extra[f"{METADATA_KEY}.json"]).format == "torchscript"


def test_validation_passes_on_real_images(ckpt, artifacts):
    result = validate_artifact(artifacts["onnx"], ckpt)
    assert result.passed and result.count == 24 and result.top1 == 1.0 and result.max_abs < 1e-4


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_fp16_within_fp16_tolerance(ckpt, tmp_path, fmt):
    path = export_artifact(ckpt, fmt, tmp_path / f"half{SUFFIXES[fmt]}", precision="fp16")
    result = validate_artifact(path, ckpt)
    # Passes on fp16's looser default, yet is not bit-exact (so it is really fp16 compute).
    assert result.passed and 0 < result.max_abs < result.atol and result.top1 == 1.0


def test_validation_on_user_images(ckpt, artifacts, tmp_path):
    from alexnet.synthetic import render_synthetic

    for i in range(3):
        render_synthetic(i, split="train", image_size=40, seed=1)[0].save(tmp_path / f"{i}.png")
    result = validate_artifact(artifacts["ts"], ckpt, data=tmp_path)
    assert result.passed and result.count == 8 + 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        validate_artifact(artifacts["ts"], ckpt, data=tmp_path / "empty")


def test_compare_reports_failures():
    from export.validate import compare

    ref = np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]], np.float32)
    assert compare("onnx", ref + 5e-5, ref, "fp32").passed
    off = compare("onnx", ref + 2e-4, ref, "fp32")
    assert not off.passed and off.top1 == 1.0 and off.max_abs == pytest.approx(2e-4, rel=1e-3)
    assert off.max_rel == pytest.approx(2e-4 / 2.0, rel=1e-3)  # per input: worst |diff| / largest |logit|
    flipped = ref[:, [1, 0, 2]]  # first input's top-1 changes: within a loose atol, still fails fp16's top-1 rule
    assert not compare("onnx", flipped, ref, "fp16", atol=10.0).passed
    assert compare("onnx", flipped, ref, "fp32", atol=10.0).passed  # fp32 judges the logits only


def test_option_errors_before_any_work(ckpt, tmp_path):
    for kwargs, message in [
        (dict(fmt="tflite"), "unknown export format"),
        (dict(fmt="onnx", precision="int4"), "unknown precision"),
        (dict(fmt="torchscript", precision="int8"), "use --format onnx --precision int8"),
        (dict(fmt="onnx", batch_size=0), "at least 1"),
        (dict(fmt="coreml", coreml_input="video"), "unknown Core ML input"),
        (dict(fmt="coreml", batch_size=4), "one image at a time"),
        (dict(fmt="coreml", output=tmp_path / "m.mlmodel"), ".mlpackage"),
        (dict(fmt="onnx", opset=999), "newer than the installed onnx"),
    ]:
        fmt = kwargs.pop("fmt")
        with pytest.raises(ExportError, match=message):
            export_artifact(ckpt, fmt, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_opset_is_an_error_not_ignored(ckpt, tmp_path):
    # The exporter down-converts from opset 18 and, when that fails, keeps 18 without raising.
    with pytest.raises(ExportError, match="could not produce opset 17"):
        export_artifact(ckpt, "onnx", tmp_path / "old.onnx", opset=17)
    assert list(tmp_path.iterdir()) == []


def test_image_size_override_updates_metadata(ckpt, tmp_path):
    path = export_artifact(ckpt, "torchscript", tmp_path / "big.pt", image_size=48)
    with runtime.load(path, device="cpu") as predictor:
        assert predictor.metadata.input_shape == (None, 3, 48, 48)
        assert predictor.metadata.preprocess.crop == 48
        batch = random_batch(2, size=48)
        assert_agrees(predictor.predict_logits(batch), reference(ckpt, batch))


# Core ML: conversion and structure everywhere, prediction on macOS only.


@pytest.mark.parametrize("variant,size", [("cifar", 32), ("torchvision", 64), ("paper", 67)])
def test_coreml_rewrites_keep_the_function(variant, size):
    """What runs on Linux of the image path: the static pooling and conv1 / std, which see
    (pixel/255 - mean) from ImageType, compute exactly the model on normalized input."""
    from export.to_coreml import fold_std, static_pooling

    torch.manual_seed(1)
    model = AlexNet(AlexNetConfig(variant=variant, num_classes=3)).eval()
    spec = PreprocessSpec.for_image_size(size)
    pixels = torch.randint(0, 256, (2, 3, size, size)).float()  # (N, 3, S, S) in 0..255
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    shifted = pixels / 255 - mean  # what Core ML feeds the network: scale 1/255, bias -mean
    with torch.no_grad():
        expected = model(shifted / std)
        got = fold_std(static_pooling(model, size), spec.std)(shifted)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def coreml(ckpt, cifar_coreml_fp16, tmp_path_factory):
    out = tmp_path_factory.mktemp("export-coreml")
    return {
        "image": cifar_coreml_fp16,  # fp16, image input: the session's
        "tensor": export_artifact(ckpt, "coreml", out / "tensor.mlpackage", precision="fp32", coreml_input="tensor"),
    }


@pytest.mark.parametrize("kind", ["image", "tensor"])
def test_coreml_spec_labels_metadata_weights(ckpt, coreml, kind):
    import coremltools as ct

    path = coreml[kind]
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert coreml_problems(path, load_checkpoint(ckpt)) == []
    spec = ct.utils.load_spec(str(path))
    description = spec.description
    assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion >= 7  # iOS 16
    assert description.input[0].type.WhichOneof("Type") == ("imageType" if kind == "image" else "multiArrayType")
    assert {o.name for o in description.output} == {"classLabel", "logits"}
    assert description.predictedFeatureName == "classLabel" and description.predictedProbabilitiesName == "logits"
    assert description.metadata.author and description.metadata.shortDescription and description.metadata.versionString
    meta = ArtifactMetadata.from_json(description.metadata.userDefined[METADATA_KEY])
    assert meta.format == "coreml" and meta.class_names == tuple(CLASSES)
    assert meta.precision == ("fp16" if kind == "image" else "fp32")
    assert meta.input_shape == ((1, 3, 32, 32) if kind == "image" else (None, 3, 32, 32))


def test_coreml_weight_check_catches_a_difference(ckpt, coreml):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    from export.validate import weight_problems

    model = ct.models.MLModel(str(coreml["image"]), skip_model_load=True)
    spec = model.get_spec()
    program = load_program(spec, spec.specificationVersion, model.weights_dir)
    # Read as if the input were a tensor, the package's conv1 (divided by std) no longer matches.
    problems = weight_problems(program, load_checkpoint(ckpt), image_input=False)
    assert problems == ["weight features.0.weight differs from the checkpoint beyond fp16 rounding"]


def test_coreml_check_catches_wrong_labels(ckpt, coreml):
    other = load_checkpoint(ckpt)
    other.class_names = [c.upper() for c in CLASSES]
    problems = coreml_problems(coreml["tensor"], other)
    assert problems and all("class names" in p for p in problems)


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML itself predicts")
def test_coreml_validation_off_macos_predicts_with_the_reference_evaluator(ckpt, coreml):
    result = validate_artifact(coreml["image"], ckpt)
    assert result.passed and "reference evaluator" in result.note and "weights checked" in result.note
    assert result.top1 == 1.0 and result.max_abs is not None and result.max_abs <= result.atol


@pytest.mark.macos
@pytest.mark.parametrize("kind", ["image", "tensor"])
def test_coreml_predicts_like_pytorch(ckpt, coreml, kind):
    result = validate_artifact(coreml[kind], ckpt)
    assert result.passed and result.top1 >= 0.99
