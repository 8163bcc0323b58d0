"""The torchvision and paper variants through every exporter (the cifar one is in test_export_formats).

Each variant is exported once per kind (module-scoped, the tests' 1/16-width models: a few seconds),
at its smallest convenient input size, then checked against PyTorch like the cifar artifacts.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import assert_agrees, random_batch, reference, saved_checkpoint

import runtime
from alexnet.checkpoint import load_checkpoint
from export import export_artifact
from export.validate import coreml_problems

FIXED = 2


@pytest.fixture(scope="module", params=[("torchvision", 64), ("paper", 67)], ids=lambda p: p[0])
def exported(request, tmp_path_factory):
    variant, size = request.param
    ckpt = saved_checkpoint(tmp_path_factory.mktemp(variant) / f"{variant}.pth", variant=variant, size=size)
    out = ckpt.parent
    paths = {
        ("torchscript", None): export_artifact(ckpt, "torchscript"),
        ("torchscript", FIXED): export_artifact(ckpt, "torchscript", out / "fixed.pt", batch_size=FIXED),
        ("onnx", None): export_artifact(ckpt, "onnx"),
        ("onnx", FIXED): export_artifact(ckpt, "onnx", out / "fixed.onnx", batch_size=FIXED),
        ("coreml", 1): export_artifact(ckpt, "coreml", precision="fp16"),
    }
    return {"variant": variant, "size": size, "ckpt": ckpt, "paths": paths}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_dynamic_batch_agrees(exported, fmt):
    for n in (1, 7):
        batch = random_batch(n, size=exported["size"], seed=n)
        with runtime.load(exported["paths"][fmt, None], device="cpu") as predictor:
            assert predictor.metadata.batch_size is None
            assert predictor.metadata.model_config["variant"] == exported["variant"]
            assert_agrees(predictor.backend.run(batch), reference(exported["ckpt"], batch))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_fixed_batch_agrees(exported, fmt):
    batch = random_batch(FIXED, size=exported["size"])
    with runtime.load(exported["paths"][fmt, FIXED], device="cpu") as predictor:
        assert predictor.metadata.input_shape == (FIXED, 3, exported["size"], exported["size"])
        assert_agrees(predictor.backend.run(batch), reference(exported["ckpt"], batch))


def test_onnx_reference_evaluator_agrees(exported):
    from onnx.reference import ReferenceEvaluator

    batch = random_batch(1, size=exported["size"], seed=3)
    (got,) = ReferenceEvaluator(str(exported["paths"]["onnx", None])).run(None, {"input": batch})
    assert_agrees(np.asarray(got), reference(exported["ckpt"], batch))


def test_coreml_structure(exported):
    path = exported["paths"]["coreml", 1]
    assert path.suffix == ".mlpackage" and path.is_dir()
    assert coreml_problems(path, load_checkpoint(exported["ckpt"])) == []
