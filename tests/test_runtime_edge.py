"""The runtime on an edge install: numpy, Pillow and onnxruntime, no torch.

Marked `runtime`: CI also runs these (with test_preprocess.py and test_metadata.py) in a venv
that has only the base install (`make test-edge`), so nothing here may import torch or onnx
at module level.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import CLASS_NAMES, SIZE, TINY_ONNX, build_tiny_onnx, reference_logits

import runtime
from runtime.cli import main as run_main

pytestmark = pytest.mark.runtime


def write_image(path, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_committed_fixture_is_what_the_generator_makes():
    pytest.importorskip("onnx", reason="needs onnx to rebuild the fixture (the [export] extra)")
    assert TINY_ONNX.read_bytes() == build_tiny_onnx(), "regenerate it: python tests/tiny_onnx.py"


def test_onnx_logits_match_numpy():
    batch = np.random.default_rng(1).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    with runtime.load(TINY_ONNX, device="cpu") as predictor:
        assert predictor.metadata.class_names == CLASS_NAMES
        np.testing.assert_allclose(predictor.predict_logits(batch), reference_logits(batch), rtol=1e-5, atol=1e-5)


def test_predict_an_image_file(tmp_path):
    image = write_image(tmp_path / "x.png")
    with runtime.load(TINY_ONNX, device="cpu") as predictor:
        [prediction] = predictor.predict(image, topk=2)
        expected = reference_logits(runtime.preprocess.preprocess_image(image, predictor.metadata.preprocess)[None])
    assert prediction.ok and prediction.indices[0] == int(expected.argmax())
    assert set(prediction.labels) <= set(CLASS_NAMES) and 0 < sum(prediction.probabilities) <= 1 + 1e-9


def test_alexnet_run_cli(tmp_path):
    image = write_image(tmp_path / "x.png")
    result = CliRunner().invoke(run_main, ["-m", str(TINY_ONNX), "--topk", "1", str(image)])
    assert result.exit_code == 0, result.output
    assert str(image) in result.output and any(name in result.output for name in CLASS_NAMES)


def test_prediction_imports_no_torch(tmp_path):
    image = write_image(tmp_path / "x.png")
    code = (
        "import sys, runtime; p = runtime.load(sys.argv[1], device='cpu'); assert p.predict(sys.argv[2])[0].ok; "
        "bad = sorted(m for m in ('torch', 'onnx', 'coremltools') if m in sys.modules); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(TINY_ONNX), str(image)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
