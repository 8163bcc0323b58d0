"""The full-size network through every exporter, once.

The rest of the suite runs the tests' 1/16-width models (tests/builders.py): the same layers, a
few MB. Here the real 58M-parameter cifar AlexNet (230 MB of fp32 weights) is exported to every
format with one `alexnet-export` run and validated against PyTorch, and int8 ONNX is checked for
what makes it worth deploying: a quarter of the bytes, every conv and linear quantized. Marked slow
(make test-all, CI): about a minute on 2 cores.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import saved_checkpoint
from click.testing import CliRunner
from PIL import Image

import runtime
from alexnet.checkpoint import load_checkpoint
from alexnet.model import count_parameters
from export.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("full-size")
    checkpoint = saved_checkpoint(root / "model.pth", width_divisor=1)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(32):
        Image.fromarray(rng.integers(0, 256, (40, 47, 3), dtype=np.uint8)).save(images / f"img{i:02d}.png")
    return checkpoint, images


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_full_size_model_is_the_published_size(full):
    checkpoint, _ = full
    assert count_parameters(load_checkpoint(checkpoint).build_model()) == 58_301_829  # cifar, 5 classes


def test_every_format_exports_and_validates_at_full_size(full, tmp_path):
    checkpoint, _ = full
    result = run("--format", "all", checkpoint, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    for fmt in ("torchscript", "onnx", "coreml"):
        assert f"{fmt}: PASS" in result.output, result.output
    weights = 4 * 58_301_829  # fp32 bytes
    assert (tmp_path / "model.pt").stat().st_size > 0.99 * weights
    assert (tmp_path / "model.onnx").stat().st_size > 0.99 * weights
    package = sum(p.stat().st_size for p in (tmp_path / "model.mlpackage").rglob("*") if p.is_file())
    assert weights / 2 < package < 0.6 * weights  # fp16 weights: 2 bytes each


def test_int8_onnx_is_a_quarter_of_the_bytes_with_every_layer_quantized(full, tmp_path):
    checkpoint, images = full
    out = tmp_path / "int8.onnx"
    result = run("--format", "onnx", "--precision", "int8", checkpoint, "-o", out, "--calibration", images, "--force")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < 0.3 * 4 * 58_301_829
    graph = onnx.load(str(out), load_external_data=False).graph
    quantized = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    weights = [init.name for init in graph.initializer if init.name.endswith("weight_quantized")]
    assert len(weights) == 8 and quantized.issuperset(weights)  # 5 convolutions, 3 linears
    with runtime.load(out) as predictor:
        assert predictor.metadata.precision == "int8" and predictor.metadata.quantization["fp32_layers"] == []
