"""runtime.load / Predictor: every backend against PyTorch on real image files, batching, inputs."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import SMALL
from PIL import Image

import runtime
from alexnet import build_alexnet
from alexnet.checkpoint import Checkpoint, save_checkpoint
from export import export_artifact
from runtime import DeployError, InputError, Prediction
from runtime.preprocess import PreprocessSpec, preprocess_batch

CLASSES = ["cat", "dog", "fox", "owl", "yak"]
SPEC = PreprocessSpec(resize=72, crop=64)
FIXED_BATCH = 4


def make_checkpoint(path, seed=0):
    """A fresh 5-class AlexNet (the tests' 1/16 width); the last layer is scaled so probabilities are far
    from uniform."""
    torch.manual_seed(seed)
    model = build_alexnet(variant="torchvision", num_classes=len(CLASSES), width_divisor=SMALL)
    with torch.no_grad():
        model.classifier[6].weight.mul_(1000.0)  # logits of a few units (the narrow layers make them small)
    return save_checkpoint(
        Checkpoint(config=model.config, model_state=model.state_dict(), class_names=CLASSES, preprocess=SPEC), path
    )


def make_images(folder, count=17):
    """`count` real image files of assorted sizes, formats and modes."""
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        h, w = 60 + 7 * i, 100 - 2 * i
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x * 255 // w, y * 255 // h, rng.integers(0, 256, (h, w))], axis=2).astype(np.uint8)
        image = Image.fromarray(np.roll(rgb, i, axis=2), "RGB")
        mode, ext = [("RGB", "png"), ("RGB", "jpg"), ("L", "png"), ("RGBA", "png"), ("CMYK", "jpg")][i % 5]
        path = folder / f"img{i:02d}_{mode.lower()}.{ext}"
        image.convert(mode).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def ckpt(workdir):
    return make_checkpoint(workdir / "model.pth")


@pytest.fixture(scope="module")
def images(workdir):
    return make_images(workdir / "images")


@pytest.fixture(scope="module")
def reference(ckpt, images):
    """PyTorch's own answer: eval-mode model on the shared preprocessing, softmax in torch."""
    from alexnet.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).build_model()
    with torch.inference_mode():
        logits = model(torch.from_numpy(preprocess_batch(images, SPEC)))
    return logits.numpy(), torch.softmax(logits.double(), dim=1).numpy()


@pytest.fixture(scope="module")
def predictors(workdir, ckpt):
    """One loaded predictor per backend/artifact kind, shared by the module's tests."""
    paths = {
        "onnx": export_artifact(ckpt, "onnx", workdir / "dynamic.onnx"),
        "onnx-fixed": export_artifact(ckpt, "onnx", workdir / "fixed.onnx", batch_size=FIXED_BATCH),
        "torchscript": export_artifact(ckpt, "torchscript", workdir / "model.pt"),
        "pytorch": ckpt,
    }
    loaded = {name: runtime.load(path, device="cpu") for name, path in paths.items()}
    yield loaded
    for predictor in loaded.values():
        predictor.close()


BACKENDS = {"onnx": "onnxruntime", "onnx-fixed": "onnxruntime", "torchscript": "torchscript", "pytorch": "pytorch"}


def assert_matches(predictions, reference, rows, topk):
    ref_logits, ref_probs = reference
    assert len(predictions) == len(rows)
    for p, r in zip(predictions, rows):
        assert p.ok, p.error
        expected = np.argsort(-ref_probs[r])[:topk]
        assert list(p.indices) == expected.tolist()
        assert list(p.labels) == [CLASSES[i] for i in expected]
        np.testing.assert_allclose(p.probabilities, ref_probs[r, expected], rtol=0, atol=1e-4)
        if p.logits is not None:
            np.testing.assert_allclose(p.logits, ref_logits[r], rtol=0, atol=1e-3)


@pytest.mark.parametrize("kind", list(BACKENDS))
def test_every_backend_matches_pytorch_on_image_files(predictors, images, reference, kind):
    predictor = predictors[kind]
    assert predictor.backend_name == BACKENDS[kind]
    assert reference[1].max(axis=1).min() > 0.3  # the test model is confident enough for top-k to mean something
    assert_matches(predictor.predict(images, topk=3, logits=True), reference, range(len(images)), 3)


@pytest.mark.parametrize("count", [1, 3, 17])
@pytest.mark.parametrize("kind", ["onnx", "onnx-fixed"])
def test_fixed_and_dynamic_batch_with_any_image_count(predictors, images, reference, kind, count):
    predictor = predictors[kind]
    assert predictor.metadata.batch_size == (FIXED_BATCH if kind == "onnx-fixed" else None)
    # batch_size 5 is not a multiple of the fixed batch of 4: chunks are rounded to whole model batches
    assert_matches(predictor.predict(images[:count], topk=5, batch_size=5), reference, range(count), 5)
    batch = preprocess_batch(images[:count], SPEC)
    np.testing.assert_allclose(predictor.predict_logits(batch), reference[0][:count], rtol=0, atol=1e-3)


def test_metadata_comes_from_the_artifact(predictors):
    for kind, predictor in predictors.items():
        m = predictor.metadata
        assert m.class_names == tuple(CLASSES) and m.preprocess == SPEC and m.precision == "fp32", kind
        assert tuple(m.input_shape[1:]) == (3, 64, 64)
        assert (
            m.format
            == {"onnx": "onnx", "onnx-fixed": "onnx", "torchscript": "torchscript", "pytorch": "checkpoint"}[kind]
        )
    assert predictors["onnx"].metadata.model_config["num_classes"] == 5


def test_paths_pil_images_and_arrays_agree(predictors, images):
    predictor = predictors["onnx"]
    pil = Image.open(images[0])
    uint8 = np.asarray(Image.open(images[0]).convert("RGB"))
    prepped = preprocess_batch(images[:1], SPEC)
    results = [predictor.predict(item, topk=5)[0] for item in (images[0], pil, uint8, prepped[0])]
    results.append(predictor.predict(prepped)[0])  # a 4-D float32 array is a batch
    for result in results[1:]:
        assert result.indices == results[0].indices
        np.testing.assert_allclose(result.probabilities, results[0].probabilities, atol=1e-6)
    assert results[0].source == images[0] and results[1].source == images[0] and results[2].source == "<array 0>"


def test_unreadable_images_are_reported_and_the_rest_predicted(predictors, images, reference, workdir):
    bad = workdir / "bad"
    bad.mkdir()
    (bad / "text.png").write_text("not an image")
    truncated = bad / "cut.jpg"
    truncated.write_bytes(open(images[1], "rb").read()[:300])
    inputs = [images[0], str(bad / "text.png"), str(bad / "missing.jpg"), images[1], str(truncated), images[2]]
    out = predictors["onnx-fixed"].predict(inputs, topk=2)
    assert [p.ok for p in out] == [True, False, False, True, False, True]
    assert "text.png" in out[1].error and "missing.jpg" in out[2].error and "cut.jpg" in out[4].error
    assert_matches([out[0], out[3], out[5]], reference, [0, 1, 2], 2)
    assert out[1].to_dict() == {"path": str(bad / "text.png"), "error": out[1].error}


def test_wrong_arrays_and_arguments_are_clear_errors(predictors, images):
    predictor = predictors["onnx"]
    good = preprocess_batch(images[:2], SPEC)
    with pytest.raises(InputError, match="float32.*astype"):
        predictor.predict_logits(good.astype(np.float64))
    with pytest.raises(InputError, match=r"\(N, 3, 64, 64\).*\(2, 3, 32, 32\)"):
        predictor.predict_logits(good[:, :, :32, :32])
    with pytest.raises(InputError, match=r"\(N, 3, 64, 64\)"):
        predictor.predict_logits(good[0])
    with pytest.raises(InputError, match="int32"):
        predictor.predict([images[0], np.zeros((64, 64, 3), np.int32)])
    with pytest.raises(InputError, match=r"float32 \(3, 64, 64\)"):
        predictor.predict(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(InputError, match="int"):
        predictor.predict([images[0], 42])
    with pytest.raises(InputError, match="topk"):
        predictor.predict(images[0], topk=0)
    assert issubclass(InputError, DeployError)
    assert predictor.predict_logits(good[:0]).shape == (0, 5)


def test_topk_is_capped_at_the_class_count_and_logits_on_request(predictors, images):
    [p] = predictors["onnx"].predict(images[0], topk=50)
    assert len(p.indices) == 5 and sorted(p.indices) == list(range(5))
    assert abs(sum(p.probabilities) - 1.0) < 1e-6 and list(p.probabilities) == sorted(p.probabilities, reverse=True)
    assert p.logits is None and "logits" not in p.to_dict()
    [p] = predictors["onnx"].predict(images[0], topk=1, logits=True)
    assert len(p.logits) == 5 and p.indices[0] == int(np.argmax(p.logits))
    assert isinstance(p, Prediction) and set(p.to_dict()) == {"path", "labels", "indices", "probabilities", "logits"}


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_cuda_matches_pytorch(predictors, workdir, images, reference, kind):
    path = {"onnx": workdir / "dynamic.onnx", "torchscript": workdir / "model.pt"}[kind]
    import onnxruntime

    if kind == "onnx" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu)")
    with runtime.load(path, device="cuda") as predictor:
        assert "CUDA" in predictor.device.upper()
        assert_matches(predictor.predict(images, topk=3), reference, range(len(images)), 3)


@pytest.mark.macos
@pytest.mark.parametrize("coreml_input", ["image", "tensor"])
def test_coreml_matches_pytorch(workdir, ckpt, images, reference, coreml_input):
    path = export_artifact(ckpt, "coreml", workdir / f"model-{coreml_input}.mlpackage", coreml_input=coreml_input)
    with runtime.load(path, device="cpu") as predictor:
        assert predictor.backend_name == "coreml"
        assert_matches(predictor.predict(images, topk=3), reference, range(len(images)), 3)


NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"torch is blocked in this test ({name})", name=name)

sys.meta_path.insert(0, NoTorch())
"""

ISOLATED = (
    NO_TORCH
    + """
import importlib, json, pkgutil
import runtime

# every module under runtime/, the torchscript backend included, imports without torch
names = sorted(info.name for info in pkgutil.walk_packages(runtime.__path__, "runtime."))
for name in names:
    importlib.import_module(name)
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "alexnet", "export"))
onnx_path, ts_path, ckpt_path, *images = sys.argv[1:]
predictions = [p.to_dict() for p in runtime.load(onnx_path, device="cpu").predict(images, topk=3)]
errors = []
for path in (ts_path, ckpt_path):
    try:
        runtime.load(path)
    except runtime.BackendUnavailableError as exc:
        errors.append(str(exc))
print(json.dumps({"modules": names, "imported": imported, "predictions": predictions, "errors": errors}))
"""
)


def test_onnx_predictions_in_a_process_without_torch(predictors, workdir, ckpt, images, reference):
    import subprocess

    args = [str(workdir / "dynamic.onnx"), str(workdir / "model.pt"), str(ckpt), *images[:5]]
    done = subprocess.run([sys.executable, "-c", ISOLATED, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert {
        "runtime.cli",
        "runtime.predictor",
        "runtime.backends.torchscript_backend",
        "runtime.backends.coreml_backend",
    } <= set(result["modules"])
    assert result["imported"] == []  # neither torch nor alexnet/export came along
    predictions = [
        Prediction(p["path"], tuple(p["labels"]), tuple(p["indices"]), tuple(p["probabilities"]))
        for p in result["predictions"]
    ]
    assert_matches(predictions, reference, range(5), 3)
    ts_error, ckpt_error = result["errors"]
    assert "torchscript backend needs PyTorch" in ts_error and "onnxruntime" in ts_error
    assert "pytorch backend cannot be imported" in ckpt_error and "torch" in ckpt_error


def _module_level_imports(tree):
    """Imports that run when the module is imported: everything but function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
        stack.extend(ast.iter_child_nodes(node))


def test_no_runtime_module_imports_torch_or_the_packages_above_it():
    root = Path(runtime.__file__).parent
    sources = sorted(root.rglob("*.py"))
    assert len(sources) >= 8
    for source in sources:
        tree = ast.parse(source.read_text(), str(source))
        top = [name for name in _module_level_imports(tree) if name.split(".")[0] == "torch"]
        assert not top, f"{source} imports torch at import time"
        anywhere = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in anywhere if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in anywhere if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("alexnet", "export")], f"{source} imports alexnet/export"
