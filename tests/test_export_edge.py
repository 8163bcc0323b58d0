"""alexnet-export --format executorch / litert: the torch.export front end, fp32 against PyTorch,
int8 behind the gate, the batch each format takes, metadata and hash in the file, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from builders import random_batch, reference, saved_checkpoint
from torch import nn

import runtime
from export import ExportError, QuantizeOptions, export_artifact, pt2e_int8
from export.torch_export import BandedLRN, edge_ready
from runtime.integrity import IntegrityError

FAST = {"calibration": "synthetic", "calibration_size": 16, "gate_size": 40}
SUFFIX = {"executorch": ".pte", "litert": ".tflite"}
NEEDS = {"executorch": ("executorch",), "litert": ("litert_torch", "ai_edge_litert")}


def edge_format(name: str):
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    reason = f"{name} export needs {', '.join(missing)} (the [{name}] extra)"
    return pytest.param(name, marks=pytest.mark.skipif(bool(missing), reason=reason), id=name)


FORMATS = [edge_format("executorch"), edge_format("litert")]


def names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("size", [5, 3, 4])
def test_banded_lrn_is_local_response_norm(size):
    torch.manual_seed(0)
    lrn = nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=2.0)
    x = torch.randn(2, 12, 5, 5) * 30  # activations of AlexNet's scale, where the normalization bites
    got, want = BandedLRN(lrn, 12)(x), lrn(x)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant, size", [("paper", 227), ("cifar", 32), ("torchvision", 224), ("cifar", 64)])
def test_edge_ready_computes_the_same_function_without_lrn_or_adaptive_pool(variant, size):
    from alexnet.model import AlexNet, AlexNetConfig

    torch.manual_seed(0)
    model = AlexNet(AlexNetConfig(variant=variant, num_classes=5, width_divisor=16)).eval()
    ready = edge_ready(model, size)
    kinds = {type(m) for m in ready.modules()}
    assert nn.LocalResponseNorm not in kinds and nn.AdaptiveAvgPool2d not in kinds
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(ready(x), model(x), rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == (variant == "paper")  # a copy


@pytest.fixture(scope="module")
def exported(cifar_checkpoint, tmp_path_factory):
    """export(fmt, precision) -> (path, progress lines): each artifact exported once for the module."""
    cache = {}

    def export(fmt, precision="fp32"):
        if (fmt, precision) not in cache:
            lines, folder = [], tmp_path_factory.mktemp(f"{fmt}-{precision}")
            options = QuantizeOptions(**FAST) if precision == "int8" else None
            path = export_artifact(
                cifar_checkpoint,
                fmt,
                folder / f"m{SUFFIX[fmt]}",
                precision=precision,
                quantize=options,
                echo=lines.append,
            )
            cache[fmt, precision] = path, lines
        return cache[fmt, precision]

    return export


@pytest.fixture(params=FORMATS)
def fp32_artifact(request, exported):
    return request.param, exported(request.param)[0]


def test_fp32_matches_pytorch_with_metadata_and_hash_in_the_file(fp32_artifact, cifar_checkpoint):
    from export import validate_artifact

    fmt, path = fp32_artifact
    batch = random_batch(40)  # more than a .pte takes per call (15), not a multiple of it
    with runtime.load(path) as predictor:
        assert predictor.backend_name == fmt
        metadata = predictor.metadata
        got = predictor.predict_logits(batch)
    np.testing.assert_allclose(got, reference(cifar_checkpoint, batch), atol=1e-4, rtol=1e-4)
    assert metadata.format == fmt and metadata.precision == "fp32" and len(metadata.weights_sha256) == 64
    assert metadata.class_names and metadata.preprocess.crop == 32
    if fmt == "executorch":
        assert metadata.batch_size is None and metadata.max_batch == 15
    else:
        assert metadata.batch_size == 1 and metadata.max_batch is None
    assert validate_artifact(path, cifar_checkpoint).passed


def test_a_changed_weight_is_refused(fp32_artifact, tmp_path):
    fmt, path = fp32_artifact
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # the weights are most of either file
    copy = tmp_path / path.name
    copy.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="do not match the SHA-256 recorded"):
        runtime.load(copy)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fixed_batch_is_exported_as_asked(fmt, cifar_checkpoint, tmp_path):
    path = export_artifact(cifar_checkpoint, fmt, tmp_path / f"b4{SUFFIX[fmt]}", batch_size=4)
    batch = random_batch(6)
    with runtime.load(path) as predictor:
        assert predictor.metadata.batch_size == 4 and predictor.metadata.max_batch is None
        np.testing.assert_allclose(predictor.predict_logits(batch), reference(cifar_checkpoint, batch), atol=1e-4)


def test_batches_a_format_cannot_take_are_refused_before_writing(cifar_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="ExecuTorch runs at most 15 images per call, not 16"):
        export_artifact(cifar_checkpoint, "executorch", tmp_path / "m.pte", batch_size=16)
    with pytest.raises(ExportError, match="LiteRT has no fp16 export"):
        export_artifact(cifar_checkpoint, "litert", tmp_path / "m.tflite", precision="fp16")
    assert names(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_paper_variant_exports_with_its_lrn_rewritten(fmt, tmp_path):
    checkpoint = saved_checkpoint(tmp_path / "paper.pth", variant="paper", size=227)
    path = export_artifact(checkpoint, fmt, tmp_path / f"paper{SUFFIX[fmt]}")
    batch = random_batch(2, size=227)
    with runtime.load(path) as predictor:
        got = predictor.predict_logits(batch)
    want = reference(checkpoint, batch)
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_int8_passes_the_gate_records_it_and_is_under_30_percent_of_fp32(fmt, exported):
    (path, lines), (fp32_path, _) = exported(fmt, "int8"), exported(fmt)
    assert lines[0] == "calibrating on 16 images from synthetic train split (seed 0), then gating ..."
    assert lines[1] == "calibrated on 16 images from synthetic train split (seed 0) (PT2E, histogram)"
    assert lines[2].startswith("  gate [all layers int8]: PASS")
    batch = random_batch(16)
    with runtime.load(path) as predictor:
        metadata = predictor.metadata
        int8_logits = predictor.predict_logits(batch)
    with runtime.load(fp32_path) as predictor:
        fp32_logits = predictor.predict_logits(batch)
    assert (int8_logits.argmax(1) == fp32_logits.argmax(1)).mean() >= 0.9
    record = metadata.quantization
    assert metadata.precision == "int8" and metadata.format == fmt and metadata.weights_sha256
    assert record["gate"]["passed"] and record["gate"]["images"] == 40 and record["fp32_layers"] == []
    assert "(PT2E)" in record["scheme"]["quantizer"] and record["calibration"]["images"] == 16
    assert path.stat().st_size <= 0.3 * fp32_path.stat().st_size
    assert names(path.parent) == [path.name]


@pytest.mark.slow  # two int8 exports per format; the search itself is tested fast with ONNX
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_gate_that_cannot_pass_writes_nothing_unless_forced(fmt, cifar_checkpoint, tmp_path, monkeypatch):
    real = pt2e_int8.run_attempt
    monkeypatch.setattr(pt2e_int8, "run_attempt", lambda path, inputs, backend: -real(path, inputs, backend))
    out = tmp_path / f"m{SUFFIX[fmt]}"
    options = QuantizeOptions(**FAST, max_fp32_layers=0)
    with pytest.raises(ExportError, match="fails the accuracy gate at every step.*nothing written"):
        export_artifact(cifar_checkpoint, fmt, out, precision="int8", quantize=options, echo=lambda s: None)
    assert names(tmp_path) == []
    lines = []
    forced = QuantizeOptions(**FAST, max_fp32_layers=0, force=True)
    export_artifact(cifar_checkpoint, fmt, out, precision="int8", quantize=forced, echo=lines.append)
    assert "written anyway because of --force" in lines[-1]
    with runtime.load(out) as predictor:
        gate = predictor.metadata.quantization["gate"]
    assert gate["passed"] is False and gate["forced"] is True


@pytest.mark.slow  # five int8 exports per format
@pytest.mark.parametrize("fmt", FORMATS)
def test_fallback_keeps_the_sensitive_layer_in_fp32(fmt, cifar_checkpoint, tmp_path, monkeypatch):
    """features.0 made sensitive on purpose: while it is quantized, a fifth of the outputs flip."""
    real_run, real_layers = pt2e_int8.run_attempt, pt2e_int8.quantizable_layers
    excluded = []

    def quantize(self, exclude):
        excluded.append(exclude)
        return real_quantize(self, exclude)

    def run(path, inputs, backend):
        logits = real_run(path, inputs, backend)
        if "features.0" not in excluded[-1]:
            logits[::5] = -logits[::5]
        return logits

    real_quantize = pt2e_int8._Search.quantize
    monkeypatch.setattr(pt2e_int8._Search, "quantize", quantize)
    monkeypatch.setattr(pt2e_int8, "run_attempt", run)
    three = ("classifier.6", "features.0", "features.5")
    monkeypatch.setattr(
        pt2e_int8, "quantizable_layers", lambda m: {k: v for k, v in real_layers(m).items() if k in three}
    )
    lines, out = [], tmp_path / f"m{SUFFIX[fmt]}"
    options = QuantizeOptions(**FAST, max_agreement_loss=0.05)
    export_artifact(cifar_checkpoint, fmt, out, precision="int8", quantize=options, echo=lines.append)
    assert lines[2].startswith("  gate [all layers int8]: FAIL") and "measuring the sensitivity of 3 layers" in lines[3]
    assert lines[-1].startswith("  gate [features.0 in fp32]: PASS")
    with runtime.load(out) as predictor:
        record = predictor.metadata.quantization
    assert record["fp32_layers"] == ["features.0"] and names(tmp_path) == [out.name]


def test_other_calibration_methods_are_refused_for_pt2e(cifar_checkpoint, tmp_path):
    options = QuantizeOptions(**FAST, method="entropy")
    with pytest.raises(ExportError, match="--calibration-method entropy is for onnx and openvino"):
        export_artifact(cifar_checkpoint, "executorch", tmp_path / "m.pte", precision="int8", quantize=options)
    assert names(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_excluded_layer_really_stays_fp32(fmt):
    """The fallback's promise, checked in the quantized graph: the excluded layer's weight is a plain
    float tensor, every other conv/linear reads a dequantized int8 one (litert-torch 0.10's own
    module-name filter matched nothing: this caught it)."""
    import importlib

    from alexnet.model import AlexNet, AlexNetConfig
    from export.torch_export import edge_ready, quantize_pt2e

    writer = importlib.import_module(f"export.to_{fmt}")
    torch.manual_seed(0)
    model = edge_ready(AlexNet(AlexNetConfig(variant="cifar", num_classes=5, width_divisor=16)).eval(), 32)
    calibration = [random_batch(8, seed=s) for s in range(2)]
    quantized = quantize_pt2e(model, writer.quantizer(("classifier.6",)), calibration, 32, fold=False)
    weight_quantized = {}
    for node in quantized.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            layer = list(node.meta["nn_module_stack"].values())[-1][0]
            weight_quantized[layer] = "dequantize" in str(node.args[1].target)
    assert weight_quantized.pop("classifier.6") is False
    assert weight_quantized and all(weight_quantized.values()), weight_quantized
