"""int8 calibration on folders of any size (issue 26, item 8): every batch counts, however many
there are; a tiny folder calibrates or says in one line why not; --gate-data frees the whole
calibration folder for calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import saved_checkpoint
from click.testing import CliRunner
from PIL import Image

from export import calibration
from export.cli import main
from runtime.preprocess import PreprocessSpec

SPEC = PreprocessSpec(resize=36, crop=32)


def export_int8(checkpoint, out, *args):
    args = ["--format", "onnx", "--precision", "int8", checkpoint, "-o", out, "--gate-size", "16", "--force", *args]
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """`alexnet-data synthetic --per-class 40 --val-per-class 10` at 36 px: train/ holds 8 classes
    of 40 images (320), val/ 8 of 10 (80); train/ alone is a class-folder tree whose 80/20 split
    calibrates on 256 images (16 batches of 16), the issue's failing case."""
    from alexnet.synthetic import write_synthetic_imagefolder

    root = tmp_path_factory.mktemp("shapes")
    write_synthetic_imagefolder(root, per_class=40, val_per_class=10, image_size=36)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return saved_checkpoint(tmp_path_factory.mktemp("int8-calibration") / "model.pth")


@pytest.mark.parametrize("count", [16, 17])
def test_calibration_ranges_cover_every_batch(tmp_path, count):
    """onnxruntime's CalibMaxIntermediateOutputs=8 dropped each full group of 8 batches unmerged:
    16 batches failed ("No data is collected."), 17 kept the ranges of the last one alone."""
    from tiny_onnx import TINY_ONNX

    from export.quantize import CalibrationReader, Scheme, quantize_model

    batches = [np.random.default_rng(i).random((4, 3, 8, 8), dtype=np.float32) for i in range(count)]
    batches[0][0, 0, 0, 0] = 100.0  # the first batch alone reaches 100
    reader = CalibrationReader(iter((batch, None) for batch in batches), "input")
    cache = tmp_path / "ranges.json"
    scheme = Scheme("uint8")
    quantize_model(TINY_ONNX, tmp_path / "q.onnx", reader, scheme=scheme, method="minmax", cache=cache, exclude=())
    assert json.loads(cache.read_text())["data"]["input"]["highest"]["data"] == [100.0]


def test_a_256_image_class_folder_calibrates_at_the_default_size(shapes, checkpoint, tmp_path):
    result = export_int8(checkpoint, tmp_path / "m.onnx", "--calibration", shapes / "train")
    assert result.exit_code == 0, result.output
    assert f"calibrated on 256 images from {shapes / 'train'} train split (minmax)" in result.output
    assert "fewer than the 300 asked for; using them all" in result.output


def test_with_gate_data_calibration_takes_the_whole_folder(shapes, checkpoint, tmp_path):
    args = ["--calibration", shapes / "train", "--gate-data", shapes / "val", "--calibration-size", "1000"]
    result = export_int8(checkpoint, tmp_path / "m.onnx", *args)
    assert result.exit_code == 0, result.output
    assert f"calibrated on 320 images from {shapes / 'train'} (every image) (minmax)" in result.output


def test_whole_folders_of_every_layout(shapes, tmp_path):
    names = ["circle", "square"]
    for data, whole, held_out in [(shapes, 400, 80), (shapes / "train", 320, 64), (shapes / "val" / "star", 10, None)]:
        calib, gate = calibration.resolve_calibration(str(data), str(shapes / "val"), names, SPEC)
        assert calib.count == whole and gate.count == 80 and "(every image)" in calib.description
        if held_out is not None:  # without --gate-data, the same data holds a split out
            calib, gate = calibration.resolve_calibration(str(data), None, names, SPEC)
            assert calib.count + gate.count == whole and gate.count == held_out


def test_a_few_flat_images_always_leave_some_to_calibrate_and_some_to_gate(tmp_path):
    # Names hashing to 0 mod 5 are held out; with a few files that can be none (or all) of them.
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "img002.png").write_bytes(b"")
    for count in range(2, 13):  # img002 .. img009 all hash to the calibration side
        (folder / f"img{count + 1:03d}.png").write_bytes(b"")  # listed, never read: the split is by name
        calib, gate = calibration.resolve_sets(str(folder), ["a"], SPEC)
        paths = [calib.load(i) for i in range(calib.count)] + [gate.load(i) for i in range(gate.count)]
        assert calib.count >= 1 and gate.count >= 1 and len(set(paths)) == len(paths) == count


def one_image(folder):
    folder.mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("layout", ["flat", "class folder"])
def test_one_image_calibrates_with_gate_data_and_says_why_not_without(checkpoint, tmp_path, monkeypatch, layout):
    from export import to_onnx_int8

    data = tmp_path / "data"
    one_image(data / "circle" if layout == "class folder" else data)
    gate = one_image(tmp_path / "gate")
    result = export_int8(checkpoint, tmp_path / "m.onnx", "--calibration", data, "--gate-data", gate)
    assert result.exit_code == 0, result.output
    assert f"calibrated on 1 images from {data} (every image)" in result.output

    def no_heavy_work(*args, **kwargs):
        raise AssertionError("the fp32 export started")

    monkeypatch.setattr(to_onnx_int8._Workspace, "prepare", no_heavy_work)
    result = export_int8(checkpoint, tmp_path / "n.onnx", "--calibration", data)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.splitlines() == [
        f"Error: {data} has 1 image, too few to hold some out of calibration for the accuracy gate; "
        "pass --gate-data (images for the gate)"
    ]


class _Terminal:
    """A stderr that says it is a terminal: where tqdm draws its bars."""

    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_calibration_and_gate_show_progress_on_a_terminal_only(shapes, monkeypatch, tty):
    from export.gate import gate_progress

    stderr = _Terminal(tty)
    monkeypatch.setattr("sys.stderr", stderr)
    calib, _ = calibration.resolve_sets(str(shapes), [f"c{i}" for i in range(8)], SPEC)
    log = calibration.ReadLog()
    batches = list(calibration.batches(calib, SPEC, limit=24, batch_size=8, log=log, desc="calibration images"))
    assert [len(b) for b, _ in batches] == [8, 8, 8]
    assert list(gate_progress(range(0, 64, 32), "gate: model.onnx")) == [0, 32]
    shown = "calibration images:   0%|" in stderr.text and "gate: model.onnx:   0%|" in stderr.text
    assert shown == tty, stderr.text  # a log file (not a terminal) gets no bars
