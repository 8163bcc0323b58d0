"""Hostile inputs (issue 9, sections 1, 3, 6, 7): bounded memory, untrusted metadata, FIFOs, engine
errors, strict JSON, escaped class names. Metadata field checks are in test_metadata.py, hostile
checkpoints (section 8) in test_checkpoint.py.

Every failure must be a one-line `DeployError` (exit 1 from a CLI, 2 for a bad flag). Anything
that could hang (a FIFO) or eat memory (a thin strip) runs in a subprocess with a timeout, so a
regression fails the test instead of hanging or starving the suite.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import runtime
from alexnet.data import ImageDataset, UnwrappedLoader, _eval_transform
from alexnet.model import AlexNet, AlexNetConfig, InputTooSmallError
from runtime import DeployError, ImageLoadError, MetadataError, ModelLoadError, ModelRunError, PreprocessSpec
from runtime.cli import main, printable
from runtime.loader import read_labels
from runtime.metadata import MAX_BATCH, MAX_NAME_LENGTH, METADATA_KEY, ArtifactMetadata
from runtime.preprocess import MAX_CROP, MAX_RESIZE, MAX_RESIZED_PIXELS, preprocess_image

NAMES = ["ant", "bee", "cow", "doe"]
WEIGHT = np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 2.0, -0.5, 1.0], [-1.0, 0.5, 1.0, -2.0]], np.float32)  # (3, 4)
CLI = "import sys; from runtime.cli import main; sys.exit(main())"
HANG_GUARD_S = 120  # generous: only a hang (or a machine far slower than any CI) reaches it


def metadata(resize=36, crop=32, names=NAMES, **changes):
    """Our metadata as a JSON-ready dict, with any field replaced (bad values included)."""
    data = ArtifactMetadata(
        class_names=tuple(names),
        preprocess=PreprocessSpec(resize=36, crop=32),
        model_config={},
        input_name="x",
        output_name="y",
        input_shape=(None, 3, 32, 32),
        format="onnx",
    ).to_dict()
    data["preprocess"].update(resize=resize, crop=crop)
    data["input_shape"] = [None, 3, crop, crop]
    data.update(changes)
    return data


def save_onnx(path, nodes, inputs, initializers=(), meta=None, out_dims=("n", 4)):
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_dims))],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    if meta is not None:
        model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.save(model, path)
    return path


def image_onnx(path, meta=None, dims=("n", 3, 32, 32), weight=WEIGHT, elem=TensorProto.FLOAT):
    """(N, 3, H, W) -> global average pool -> (N, 3) @ weight -> (N, 4); a uint8 input is cast first."""
    first = (
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT)
        if elem != TensorProto.FLOAT
        else helper.make_node("Identity", ["x"], ["xf"])
    )
    nodes = [
        first,
        helper.make_node("GlobalAveragePool", ["xf"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["y"]),
    ]
    return save_onnx(
        path,
        nodes,
        [helper.make_tensor_value_info("x", elem, list(dims))],
        [numpy_helper.from_array(weight, "W")],
        meta,
    )


def run_cli(*args, cwd, timeout=HANG_GUARD_S):
    """alexnet-run in a fresh process: a hang is a TimeoutExpired (the child is killed), not a stuck suite."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def one_line_error(stderr):
    """The CLI's 'Error: ...' line; asserts it is the only thing on stderr (no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def picture(path, size=(40, 30)):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model(tmp_path):
    return image_onnx(tmp_path / "model.onnx", metadata())


# --- 1. memory bounded by the input, not by what it claims -----------------------------------------

PEAK_RSS_WRAPPER = """
import resource, subprocess, sys
# Its own timeout, under the test's: a killed wrapper would leave this child running.
child = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], capture_output=True, text=True, timeout=90)
sys.stderr.write(child.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux: the CLI's own peak
sys.exit(child.returncode)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux (bytes on macOS)")
def test_thin_strip_is_refused_before_resizing_with_bounded_memory(tmp_path):
    model = image_onnx(tmp_path / "m.onnx", metadata(resize=256, crop=224), dims=("n", 3, 224, 224))
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 200_000)).save(strip)  # a few hundred bytes; 256 x 51,200,000 once resized
    assert strip.stat().st_size < 10_000
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, CLI, "-m", model, strip],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        cwd=tmp_path,
    )
    peak_mib = int(proc.stdout.split()[-1]) / 1024
    assert proc.returncode == 1, proc.stderr
    assert peak_mib < 1024, f"alexnet-run peaked at {peak_mib:.0f} MiB on a {strip.stat().st_size}-byte PNG"
    failures = [line for line in proc.stderr.splitlines() if "strip.png" in line]
    assert len(failures) == 1 and "1x200000" in failures[0] and "256x51200000" in failures[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_resize_is_bounded_and_extreme_ratios_that_fit_still_work(tmp_path):
    spec = PreprocessSpec(resize=256, crop=224)
    fits = tmp_path / "panorama.png"
    Image.new("RGB", (60_000, 2)).save(fits)  # 38,400,000 x 256 would not fit; see below
    wide = tmp_path / "wide.png"
    Image.new("RGB", (2_000, 2)).save(wide)  # -> 256,000 x 256 = 65.5 MP, under the limit
    assert preprocess_image(wide, spec).shape == (3, 224, 224)
    with pytest.raises(ImageLoadError, match=r"panorama\.png: refused, a 60000x2 image .* 7680000x256 "):
        preprocess_image(fits, spec)
    assert MAX_RESIZED_PIXELS == 89_478_485  # documented: Pillow's default decompression-bomb limit


def test_onnx_metadata_with_a_huge_resize_is_refused_at_load(tmp_path):
    path = image_onnx(tmp_path / "huge.onnx", metadata(resize=200_000))
    with pytest.raises(MetadataError) as caught:
        runtime.load(path, device="cpu")
    message = str(caught.value)
    assert (
        "\n" not in message and str(path) in message and f"resize must be an integer from 1 to {MAX_RESIZE}" in message
    )


def test_a_graph_with_a_huge_fixed_batch_is_refused(tmp_path):
    path = image_onnx(tmp_path / "b.onnx", metadata(), dims=(10**7, 3, 32, 32))
    with pytest.raises(MetadataError, match=f"the graph's batch size must be null or an integer from 1 to {MAX_BATCH}"):
        runtime.load(path, device="cpu")


def test_labels_files_are_bounded(tmp_path):
    (tmp_path / "long.txt").write_text("ok\n" + "x" * (MAX_NAME_LENGTH + 1) + "\n")
    with pytest.raises(runtime.InputError, match=r"long\.txt: the labels\[1\] is 1,001 characters long"):
        read_labels(tmp_path / "long.txt")


# --- 3. nothing hangs on a FIFO ---------------------------------------------------------------------

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


@needs_fifo
def test_fifo_among_images_is_a_per_file_error(tmp_path, model):
    folder = tmp_path / "photos"
    folder.mkdir()
    picture(folder / "a.png")
    os.mkfifo(folder / "x.png")
    proc = run_cli("-m", model, "--json", folder, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rows = {os.path.basename(row["path"]): row for row in map(json.loads, proc.stdout.splitlines())}
    assert "labels" in rows["a.png"] and "is a FIFO (named pipe), not a regular file" in rows["x.png"]["error"]
    assert "Traceback" not in proc.stderr


@needs_fifo
@pytest.mark.parametrize("role", ["model", "labels"])
def test_fifo_as_model_or_labels_is_refused(tmp_path, model, role):
    fifo = tmp_path / ("fifo.onnx" if role == "model" else "names.txt")
    os.mkfifo(fifo)
    args = ("-m", fifo) if role == "model" else ("-m", image_onnx(tmp_path / "foreign.onnx"), "--labels", fifo)
    proc = run_cli(*args, picture(tmp_path / "a.png"), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in one_line_error(proc.stderr)


CHECK_IN_CHILD = """
import sys
from pathlib import Path
from runtime.errors import DeployError
fifo = Path(sys.argv[1])
def image():
    from runtime.preprocess import load_image
    load_image(fifo)
def backend():
    from runtime.backends import detect_backend
    detect_backend(fifo)
def folder():
    from alexnet.dataset_readers import read_imagefolder
    paths, _, _ = read_imagefolder(str(fifo.parent.parent), "train", val_fraction=0.5)
    print("listed", sorted(p.name for p in paths))
try:
    globals()[sys.argv[2]]()
except DeployError as exc:
    print("refused", exc)
"""


@needs_fifo
@pytest.mark.parametrize(
    "what, name, expected",
    [
        ("image", "x.png", "refused {fifo} is a FIFO (named pipe), not a regular file"),
        ("backend", "x.pth", "refused model {fifo} is a FIFO (named pipe), not a regular file"),
        ("folder", "x.png", "listed ['a.png']"),
    ],
)
def test_library_entry_points_never_open_a_fifo(tmp_path, what, name, expected):
    (tmp_path / "data" / "cls").mkdir(parents=True)
    picture(tmp_path / "data" / "cls" / "a.png")
    fifo = tmp_path / "data" / "cls" / name
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_IN_CHILD, fifo, what], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert proc.returncode == 0, proc.stderr
    assert expected.format(fifo=fifo) in proc.stdout


# --- 6. every engine error is one line, naming the model and the input ------------------------------


def flat_onnx(path, dims, width):
    """(N, ...) -> flatten -> (N, width) @ W -> (N, 4): for inputs of other ranks than (N, 3, H, W)."""
    weight = numpy_helper.from_array(np.ones((width, 4), np.float32), "W")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    return save_onnx(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))], [weight])


@pytest.mark.parametrize("kind", ["rank2", "rank3", "uint8"])
def test_onnx_models_taking_other_inputs_are_refused_at_load(tmp_path, kind):
    path = tmp_path / f"{kind}.onnx"
    if kind == "uint8":
        image_onnx(path, elem=TensorProto.UINT8)
        declared = "(n, 3, 32, 32) tensor(uint8)"
    else:
        flat_onnx(path, ("n", 4) if kind == "rank2" else ("n", 3, 32), 4 if kind == "rank2" else 96)
        declared = "(n, 4) tensor(float)" if kind == "rank2" else "(n, 3, 32) tensor(float)"
    with pytest.raises(ModelLoadError) as caught:
        runtime.load(path, device="cpu", labels=NAMES, image_size=32)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and declared in message and "(N, 3, H, W)" in message


def test_onnx_run_failure_names_the_model_and_both_inputs(tmp_path):
    path = flat_onnx(tmp_path / "flat.onnx", ("n", 3, "h", "w"), 3 * 8 * 8)  # only 8x8 inputs fit its weight
    with (
        runtime.load(path, device="cpu", labels=NAMES, image_size=32) as predictor,
        pytest.raises(ModelRunError) as caught,
    ):
        predictor.predict(np.zeros((32, 32, 3), np.uint8))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "(1, 3, 32, 32) float32" in message and "(n, 3, h, w) tensor(float)" in message


def test_foreign_torchscript_with_other_shapes_is_one_line(tmp_path):
    path = tmp_path / "linear.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(5, 4)), path)
    with (
        runtime.load(path, device="cpu", labels=NAMES, image_size=8) as predictor,
        pytest.raises(ModelRunError) as caught,
    ):
        predictor.predict(np.zeros((8, 8, 3), np.uint8))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "(1, 3, 8, 8) float32" in message
    assert "cannot be multiplied" in message  # TorchScript's own reason, not its interpreter traceback


def test_input_too_small_is_a_deploy_error():
    assert issubclass(InputTooSmallError, DeployError) and issubclass(InputTooSmallError, ValueError)
    with pytest.raises(DeployError, match="at least"):
        AlexNet(AlexNetConfig(variant="torchvision", num_classes=2)).check_input_size(10, 10)


def test_dataloader_worker_errors_keep_their_one_line_message(tmp_path):
    from torch.utils.data import DataLoader

    good, bad = picture(tmp_path / "good.png"), tmp_path / "bad.png"
    bad.write_bytes(b"not a picture at all")
    dataset = ImageDataset([good, bad], [0, 1], _eval_transform(PreprocessSpec(resize=36, crop=32)), train=False)
    # spawn: forking a test process that has engine threads running can deadlock a worker; the
    # timeout turns any hang into a failure.
    loader = UnwrappedLoader(
        DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context="spawn", timeout=60)
    )
    assert len(loader) == 2
    with pytest.raises(ImageLoadError) as caught:
        list(loader)
    assert str(caught.value) == f"{bad}: not an image file Pillow can read"
    # The traceback holds the loader's iterator: shut its workers down here, not in a later test's gc.
    caught.value.__traceback__ = None
    del caught, loader
    gc.collect()


# --- 7. output that programs read is valid -----------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize(
    "flag, value",
    [("--std", "nan,nan,nan"), ("--mean", "inf,0,0"), ("--std", "0,1,1"), ("--image-size", str(MAX_CROP + 1))],
)
def test_non_finite_or_out_of_range_overrides_are_usage_errors(tmp_path, model, flag, value):
    result = invoke("-m", model, flag, value, picture(tmp_path / "a.png"))
    assert result.exit_code == 2, result.output


def test_non_finite_outputs_are_per_image_errors_and_json_stays_strict(tmp_path):
    weight = WEIGHT.copy()
    weight[0, 0] = np.nan
    path = image_onnx(tmp_path / "nan.onnx", metadata(), weight=weight)
    result = invoke("-m", path, "--json", "--logits", picture(tmp_path / "a.png"))
    assert result.exit_code == 1

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    [row] = [json.loads(line, parse_constant=refuse) for line in result.stdout.splitlines()]
    assert row == {
        "path": str(tmp_path / "a.png"),
        "error": f"{tmp_path / 'a.png'}: the model's output is not finite (NaN or infinity) for this image",
    }


def test_class_names_are_escaped_for_the_terminal_and_verbatim_in_json(tmp_path):
    names = ["\x1b[2J\x1b[31mred", "bi\u202edi", "new\nline", "caf\u00e9"]
    path = image_onnx(tmp_path / "esc.onnx", metadata(names=names))
    image = picture(tmp_path / "a.png")
    human = invoke("-m", path, "--topk", "4", image)
    assert human.exit_code == 0, human.output
    assert "\x1b" not in human.stdout and "\u202e" not in human.stdout and "new\nline" not in human.stdout
    for shown in ("\\x1b[2J\\x1b[31mred", "bi\\u202edi", "new\\nline", "caf\u00e9"):
        assert shown in human.stdout
    [row] = [json.loads(line) for line in invoke("-m", path, "--json", "--topk", "4", image).stdout.splitlines()]
    assert sorted(row["labels"]) == sorted(names)
    assert printable("a\x00b\x9bc") == "a\\x00b\\x9bc"
