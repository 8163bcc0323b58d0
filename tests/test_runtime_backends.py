"""Backend choice, providers, plugins and foreign models, on tiny hand-built ONNX graphs (no export)."""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import runtime
from runtime import BackendUnavailableError, MetadataError, ModelLoadError, PreprocessSpec
from runtime.backends import Backend, ModelIO, detect_backend, get_backend
from runtime.backends.onnxruntime_backend import choose_providers
from runtime.metadata import METADATA_KEY, ArtifactMetadata

WEIGHT = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 2.0, -0.5, 1.0], [-1.0, 0.5, 1.0, -2.0]], np.float32)  # (3, 4)
BIAS = np.array([0.1, -0.2, 0.3, 0.0], np.float32)


def tiny_onnx(path, shape=(None, 3, 32, 32), metadata=None, dtype=TensorProto.FLOAT):
    """input (N, 3, H, W) -> global average pool -> (N, 3) @ WEIGHT + BIAS -> (N, 4) logits."""
    dims = ["batch" if d is None else d for d in shape]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["scores"]),
    ]
    if dtype != TensorProto.FLOAT:
        nodes.insert(0, helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT))
    else:
        nodes.insert(0, helper.make_node("Identity", ["pixels"], ["x"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", dtype, dims)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [dims[0], 4])],
        initializer=[numpy_helper.from_array(WEIGHT, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata is not None:
        model.metadata_props.add(key=METADATA_KEY, value=metadata.to_json())
    onnx.save(model, path)
    return path


def expected_logits(batch):
    return batch.mean(axis=(2, 3)) @ WEIGHT + BIAS


def ours(shape=(None, 3, 32, 32), names=("a", "b", "c", "d")):
    return ArtifactMetadata(
        class_names=names,
        preprocess=PreprocessSpec(resize=36, crop=32),
        model_config={},
        input_name="pixels",
        output_name="scores",
        input_shape=shape,
        format="onnx",
    )


def test_detect_backend_from_suffix_and_contents(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"")
    (tmp_path / "b.mlmodel").write_bytes(b"")
    (tmp_path / "c.mlpackage").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "Manifest.json").write_text("{}")
    (tmp_path / "e.safetensors").write_bytes(b"")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.bin")  # a TorchScript archive
    torch.save({"w": torch.zeros(1)}, tmp_path / "weights.pt")  # a checkpoint that happens to end in .pt
    (tmp_path / "junk.xyz").write_bytes(b"\x00\x01junk")
    (tmp_path / "plain").mkdir()
    got = {
        name: detect_backend(tmp_path / name)
        for name in ("a.onnx", "b.mlmodel", "c.mlpackage", "d", "e.safetensors", "scripted.bin", "weights.pt")
    }
    coreml = "coreml" if sys.platform == "darwin" else "coreml-reference"  # Core ML predicts on macOS only
    assert got == {
        "a.onnx": "onnxruntime",
        "b.mlmodel": coreml,
        "c.mlpackage": coreml,
        "d": coreml,
        "e.safetensors": "pytorch",
        "scripted.bin": "torchscript",
        "weights.pt": "pytorch",
    }
    with pytest.raises(ModelLoadError, match="--backend"):
        detect_backend(tmp_path / "junk.xyz")
    with pytest.raises(ModelLoadError, match="does not exist"):
        runtime.load(tmp_path / "missing.onnx")
    with pytest.raises(ModelLoadError, match="directory"):
        detect_backend(tmp_path / "plain")


def test_choose_providers_explicitly():
    assert choose_providers("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    everything = [
        "CPUExecutionProvider",
        "OpenVINOExecutionProvider",
        "CUDAExecutionProvider",
        "CoreMLExecutionProvider",
    ]
    assert choose_providers("auto", everything) == [
        "CUDAExecutionProvider",
        "CoreMLExecutionProvider",
        "OpenVINOExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers("cpu", everything) == ["CPUExecutionProvider"]
    assert choose_providers("cuda", everything) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("mps", everything) == ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match="OpenVINOExecutionProvider"):
        choose_providers("auto", ["CPUExecutionProvider"], ["OpenVINOExecutionProvider"])


def test_onnxruntime_session_is_configured_once_and_reused(tmp_path, monkeypatch):
    import onnxruntime

    created = []

    class CountingSession(onnxruntime.InferenceSession):
        def __init__(self, *args, **kwargs):
            created.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", CountingSession)
    predictor = runtime.load(tiny_onnx(tmp_path / "m.onnx", metadata=ours()), device="cpu", threads=1)
    batch = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(predictor.predict_logits(batch), expected_logits(batch), atol=1e-5)
    assert len(created) == 1 and created[0]["providers"] == ["CPUExecutionProvider"]
    options = predictor.backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert predictor.device == "CPU"


def test_cuda_asked_for_but_not_installed_is_a_clear_error(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match="--device cuda.*onnxruntime-gpu.*--device cpu"):
        runtime.load(tiny_onnx(tmp_path / "m.onnx", metadata=ours()), device="cuda")


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_off_macos_says_what_to_do(tmp_path):
    (tmp_path / "m.mlpackage").mkdir()
    with pytest.raises(BackendUnavailableError, match="needs macOS.*onnxruntime"):
        runtime.load(tmp_path / "m.mlpackage", backend="coreml")
    # auto: the reference evaluator, which reads the package (a one-line error for an empty one)
    with pytest.raises((ModelLoadError, BackendUnavailableError), match="cannot read|needs coremltools|reads the"):
        runtime.load(tmp_path / "m.mlpackage")


def test_backend_errors_name_the_fix(tmp_path):
    path = tiny_onnx(tmp_path / "m.onnx", metadata=ours())
    with pytest.raises(BackendUnavailableError, match="no backend named 'nope'.*onnxruntime"):
        runtime.load(path, backend="nope")
    with pytest.raises(ModelLoadError, match="not a loadable TorchScript"):
        runtime.load(path, backend="torchscript")
    (tmp_path / "broken.onnx").write_bytes(b"this is not protobuf")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        runtime.load(tmp_path / "broken.onnx")
    with pytest.raises(BackendUnavailableError, match="unknown device"):
        runtime.load(path, device="tpu")


def test_pytorch_backend_is_a_plugin_found_by_entry_point():
    [ep] = [ep for ep in entry_points(group="alexnet_deploy.backends") if ep.name == "pytorch"]
    assert ep.value == "alexnet.runtime_plugin:PyTorchBackend"
    assert get_backend("pytorch").name == "pytorch"
    assert set(runtime.backend_names()) >= {"onnxruntime", "coreml", "torchscript", "pytorch"}


def test_registered_backend_is_used(tmp_path):
    class NumpyBackend(Backend):
        name = format = "numpy-test"

        def __init__(self, path, *, device="auto", threads=None, **_):
            self.metadata, self.device = ours(), "cpu"
            self.io = ModelIO("pixels", (None, 3, 32, 32), "scores", 4)

        def run(self, batch):
            return expected_logits(batch)

    runtime.register_backend("numpy-test", NumpyBackend)
    (tmp_path / "weights.npy").write_bytes(b"")
    predictor = runtime.load(tmp_path / "weights.npy", backend="numpy-test")
    [p] = predictor.predict(np.full((32, 32, 3), 255, np.uint8), topk=1)
    assert p.labels and predictor.backend_name == "numpy-test"
    # alexnet-run offers every backend runtime.load knows, plugins and registered ones included
    from click.testing import CliRunner

    from runtime.cli import main

    Image.new("RGB", (40, 40), "white").save(tmp_path / "x.png")
    result = CliRunner().invoke(
        main, ["-m", str(tmp_path / "weights.npy"), "--backend", "numpy-test", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 0, result.output


def test_foreign_onnx_needs_labels(tmp_path):
    path = tiny_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(MetadataError, match="no alexnet-deploy metadata.*--labels FILE"):
        runtime.load(path)
    with pytest.raises(MetadataError, match="outputs 4 classes but the labels given name 3"):
        runtime.load(path, labels=["x", "y", "z"])
    (tmp_path / "names.txt").write_text("w\nx\n\ny\nz\n")
    predictor = runtime.load(path, labels=tmp_path / "names.txt")
    m = predictor.metadata
    assert m.class_names == ("w", "x", "y", "z") and m.preprocess == PreprocessSpec.for_image_size(32)
    assert (m.input_name, m.output_name, m.input_shape, m.format) == ("pixels", "scores", (None, 3, 32, 32), "onnx")
    batch = np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_logits(batch), expected_logits(batch), atol=1e-5)
    with pytest.raises(MetadataError, match="takes 32x32 inputs.*crops 48x48"):
        runtime.load(path, labels=["w", "x", "y", "z"], image_size=48)
    (tmp_path / "names.json").write_text(json.dumps(["p", "q", "r", "s"]))
    assert runtime.load(path, labels=str(tmp_path / "names.json")).metadata.class_names == ("p", "q", "r", "s")


def test_foreign_onnx_with_free_input_size_needs_image_size(tmp_path):
    path = tiny_onnx(tmp_path / "free.onnx", shape=(None, 3, None, None))
    with pytest.raises(MetadataError, match="no fixed input size.*--image-size"):
        runtime.load(path, labels=list("abcd"))
    predictor = runtime.load(path, labels=list("abcd"), image_size=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    spec = predictor.metadata.preprocess
    assert (spec.crop, spec.resize, spec.mean, spec.std) == (40, 46, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    [p] = predictor.predict(np.zeros((50, 60, 3), np.uint8), topk=4, logits=True)
    np.testing.assert_allclose(p.logits, np.full(3, -2.0) @ WEIGHT + BIAS, atol=1e-5)  # black = (0 - 0.5) / 0.25


def test_fp16_input_and_batch_mismatch(tmp_path):
    half = runtime.load(tiny_onnx(tmp_path / "half.onnx", dtype=TensorProto.FLOAT16), labels=list("abcd"))
    assert half.metadata.precision == "fp16"
    batch = np.ones((2, 3, 32, 32), np.float32)
    np.testing.assert_allclose(half.predict_logits(batch), expected_logits(batch), atol=1e-3)
    with pytest.raises(MetadataError, match="batches of 2 but its metadata says 8"):
        runtime.load(tiny_onnx(tmp_path / "bad.onnx", shape=(2, 3, 32, 32), metadata=ours(shape=(8, 3, 32, 32))))
    with pytest.raises(MetadataError, match="outputs 4 classes but its metadata name 2"):
        runtime.load(tiny_onnx(tmp_path / "bad2.onnx", metadata=ours(names=("a", "b"))))


def test_coreml_helpers_without_a_mac():
    """The Core ML backend's shape reading and pixel reconstruction, checked where Core ML cannot run."""
    from coremltools.proto import FeatureTypes_pb2

    from runtime.backends.coreml_backend import _array_shape, to_pixels
    from runtime.preprocess import center_crop, normalize, resize_shorter_side

    flexible = FeatureTypes_pb2.ArrayFeatureType(shape=[1, 3, 64, 64])
    for low, high in ((1, -1), (3, 3), (64, 64), (64, 64)):
        flexible.shapeRange.sizeRanges.add(lowerBound=low, upperBound=high)
    assert _array_shape(flexible) == (None, 3, 64, 64)
    assert _array_shape(FeatureTypes_pb2.ArrayFeatureType(shape=[4, 3, 64, 64])) == (4, 3, 64, 64)
    # an image input gets back exactly the 8-bit pixels the preprocessing started from
    spec = PreprocessSpec(resize=40, crop=32)
    image = center_crop(
        resize_shorter_side(
            Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)), 40
        ),
        32,
    )
    np.testing.assert_array_equal(to_pixels(normalize(image, spec)[None], spec)[0], np.asarray(image))


def test_coreml_run_reads_classifier_dictionaries_in_class_order():
    """CoreMLBackend.run with a stand-in for coremltools' MLModel (Core ML itself needs macOS)."""
    from runtime.backends.coreml_backend import CoreMLBackend

    spec = PreprocessSpec(resize=8, crop=8)
    seen = []

    class FakeModel:
        def predict(self, data):
            feeds = data if isinstance(data, list) else [data]
            seen.append(feeds)
            # Core ML's dictionary has no order we can rely on: reversed on purpose
            outs = [
                {
                    "logits": {
                        n: float(np.mean(np.asarray(f["input"], np.float32))) + i
                        for i, n in reversed(list(enumerate("abcd")))
                    },
                    "classLabel": "d",
                }
                for f in feeds
            ]
            return outs if isinstance(data, list) else outs[0]

    batch = np.random.default_rng(3).normal(size=(3, 3, 8, 8)).astype(np.float32)
    for image_input in (False, True):
        backend = CoreMLBackend.__new__(CoreMLBackend)
        backend.model, backend.image_input, backend._spec, backend._class_order = FakeModel(), image_input, spec, None
        backend.io = ModelIO("input", (None, 3, 8, 8), "logits", None)
        backend.configure(ArtifactMetadata(class_names=tuple("abcd"), preprocess=spec, model_config={}))
        logits = backend.run(batch)
        assert logits.shape == (3, 4) and np.allclose(logits[:, 1:] - logits[:, :1], [1, 2, 3])
        assert len(seen[-1]) == 3  # one Core ML batch prediction, one feature dict per image
        first = seen[-1][0]["input"]
        assert isinstance(first, Image.Image) if image_input else first.shape == (1, 3, 8, 8)
    assert len(backend.run(batch[:1])) == 1


def fake_torch(cuda: bool, mps: bool):
    from types import SimpleNamespace

    return SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: cuda),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        device=lambda name: f"device({name})",
    )


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")]
)
def test_one_device_rule_for_auto(cuda, mps, expected):
    from alexnet.trainloop import pick_device
    from benchmarks.cli import parse_devices
    from runtime.backends.torch_common import resolve_torch_device

    torch_like = fake_torch(cuda, mps)
    assert resolve_torch_device(torch_like, "auto") == f"device({expected})"
    if (cuda, mps) == (False, False):  # this machine: training and benchmarks follow the same rule
        assert pick_device("auto").type == "cpu" and parse_devices("auto") == ["cpu"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("cuda", "sees no CUDA device"),
        ("cuda:1", "sees no CUDA device"),
        ("mps", "no MPS device"),
        ("tpu", "unknown device"),
        ("cpu:1", "unknown"),
    ],
)
def test_devices_asked_for_by_name_must_exist(name, message):
    from runtime.backends.torch_common import resolve_torch_device

    with pytest.raises(BackendUnavailableError, match=message):
        resolve_torch_device(fake_torch(False, False), name)
