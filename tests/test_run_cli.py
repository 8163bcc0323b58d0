"""alexnet-run: output formats, directories with bad files, model discovery, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import runtime
from alexnet import build_alexnet
from alexnet.checkpoint import Checkpoint, save_checkpoint
from export import export_artifact
from runtime.cli import default_model, main
from runtime.preprocess import PreprocessSpec

CLASSES = ["ant", "bee", "cow", "doe", "eel"]
KEYS = {"path", "labels", "indices", "probabilities"}


def picture(seed, size=(80, 60)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("run_cli")


@pytest.fixture(scope="module")
def ckpt(workdir):
    torch.manual_seed(1)
    model = build_alexnet(variant="cifar", num_classes=len(CLASSES))
    with torch.no_grad():
        model.classifier[6].weight.mul_(100.0)  # spread the probabilities
    return save_checkpoint(
        Checkpoint(model.config, model.state_dict(), CLASSES, PreprocessSpec(resize=40, crop=32)), workdir / "model.pth"
    )


@pytest.fixture(scope="module")
def model(workdir, ckpt):
    return str(export_artifact(ckpt, "onnx", workdir / "model.onnx"))


@pytest.fixture(scope="module")
def library(model):
    with runtime.load(model, device="cpu") as predictor:
        yield predictor


@pytest.fixture(scope="module")
def photos(workdir):
    folder = workdir / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.png", "a.jpg", "sub/c.png"]):
        picture(i).save(folder / name)
    return folder


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_human_output_lists_topk_with_percentages(model, photos, library):
    result = run("--model", model, "--topk", "2", "--device", "cpu", photos / "a.jpg", photos / "b.png")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and lines[0] == str(photos / "a.jpg") and lines[3] == str(photos / "b.png")
    [expected] = library.predict(photos / "a.jpg", topk=2)
    assert lines[1].split() == [
        f"{expected.probabilities[0] * 100:.2f}%",
        expected.labels[0],
        f"({expected.indices[0]})",
    ]
    assert "onnxruntime on CPU, 5 classes, input 3x32x32, fp32" in result.stderr


def test_json_schema_one_object_per_image(model, photos, library):
    result = run("--model", model, "--json", "--logits", "--topk", "3", photos)
    assert result.exit_code == 0, result.output
    rows = json_lines(result)
    assert [r["path"] for r in rows] == [str(photos / n) for n in ("a.jpg", "b.png", "sub/c.png")]  # walked, sorted
    for row, expected in zip(rows, library.predict([r["path"] for r in rows], topk=3)):
        assert set(row) == KEYS | {"logits"}
        assert all(isinstance(v, str) for v in row["labels"]) and all(isinstance(v, int) for v in row["indices"])
        assert row["labels"] == [CLASSES[i] for i in row["indices"]] == list(expected.labels)
        assert row["probabilities"] == sorted(row["probabilities"], reverse=True) and len(row["logits"]) == 5
        probs = np.exp(row["logits"]) / np.exp(row["logits"]).sum()
        np.testing.assert_allclose(probs[row["indices"]], row["probabilities"], atol=1e-6)
    assert result.stderr == ""


def test_directory_with_bad_files_reports_them_and_exits_1(model, workdir):
    folder = workdir / "mixed"
    folder.mkdir()
    picture(5).save(folder / "good.jpg")
    picture(6).convert("L").save(folder / "gray.png")
    picture(7).convert("CMYK").save(folder / "cmyk.jpg")
    picture(8).convert("RGBA").save(folder / "rgba.png")
    (folder / "corrupt.jpg").write_bytes((folder / "good.jpg").read_bytes()[:200])
    (folder / "text.png").write_text("hello, I am text")
    (folder / "notes.txt").write_text("not an image at all")
    (folder / ".hidden.png").write_bytes(b"")
    result = run("--model", model, "--json", folder)
    assert result.exit_code == 1, result.output
    rows = {os.path.basename(r["path"]): r for r in json_lines(result)}
    assert sorted(rows) == ["cmyk.jpg", "corrupt.jpg", "good.jpg", "gray.png", "rgba.png", "text.png"]
    assert {n for n, r in rows.items() if "error" in r} == {"corrupt.jpg", "text.png"}
    assert all(set(r) == KEYS for n, r in rows.items() if n not in ("corrupt.jpg", "text.png"))
    assert set(rows["text.png"]) == {"path", "error"} and "not an image" in rows["text.png"]["error"]
    assert "2 of 6 images could not be predicted" in result.stderr
    assert "corrupt.jpg" in result.stderr and "text.png" in result.stderr
    assert "skipped 1 file(s) without an image suffix" in result.stderr and "notes.txt" in result.stderr
    human = run("--model", model, folder / "missing.png", folder / "good.jpg")
    assert human.exit_code == 1 and "missing.png: no such file" in human.stderr and "good.jpg" in human.stdout


def test_many_images_batched_match_single_runs(model, workdir, library, ckpt):
    folder = workdir / "many"
    folder.mkdir()
    for i in range(17):
        picture(100 + i, size=(40 + i, 50)).save(folder / f"{i:02d}.png")
    result = run("--model", model, "--json", "--batch-size", "5", folder)
    assert result.exit_code == 0, result.output
    rows = json_lines(result)
    assert len(rows) == 17
    expected = library.predict(sorted(str(p) for p in folder.iterdir()), topk=5, batch_size=1)
    for row, p in zip(rows, expected):
        assert row["path"] == p.source and row["indices"] == list(p.indices)
        np.testing.assert_allclose(row["probabilities"], p.probabilities, atol=1e-6)
    # the checkpoint itself, through the pytorch plugin, agrees with the ONNX export
    from_ckpt = json_lines(run("--model", ckpt, "--backend", "pytorch", "--json", folder))
    assert [r["indices"] for r in from_ckpt] == [r["indices"] for r in rows]
    np.testing.assert_allclose([r["probabilities"] for r in from_ckpt], [r["probabilities"] for r in rows], atol=1e-4)


def test_default_model_env_then_newest_in_demo_out(model, photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALEXNET_MODEL", raising=False)
    no_model = run(photos / "a.jpg")
    assert no_model.exit_code == 2 and "pass --model PATH, set ALEXNET_MODEL" in no_model.output
    demo = tmp_path / "demo-out" / "run1"
    (demo / "m.mlpackage" / "Data").mkdir(parents=True)
    (demo / "m.mlpackage" / "Data" / "model.mlmodel").write_bytes(b"")  # never picked from inside a package
    for age, name in ((300, "old.onnx"), (100, "new.onnx"), (200, "model.pt")):
        (demo / name).write_bytes(b"")
        os.utime(demo / name, (1e9 - age, 1e9 - age))
    assert default_model() == demo / "new.onnx"
    (demo / "new.onnx").unlink()
    os.symlink(model, demo / "new.onnx")  # now the real model, and the newest file
    result = run("--json", photos / "a.jpg")
    assert result.exit_code == 0, result.output
    assert len(json_lines(result)) == 1
    via_env = run("--json", photos / "a.jpg", env={"ALEXNET_MODEL": model})
    assert via_env.exit_code == 0 and json_lines(via_env) == json_lines(result)
    assert run(photos / "a.jpg", env={"ALEXNET_MODEL": "nope.onnx"}).exit_code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "Missing argument"),
        (["--topk", "0", "x.png"], "--topk"),
        (["--mean", "1,2", "x.png"], "three comma-separated"),
        (["--logits", "x.png"], "--logits only applies to --json"),
        (["--model", "nope.onnx", "x.png"], "does not exist"),
        (["--backend", "tflite", "x.png"], "tflite"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output


def test_foreign_onnx_needs_labels(workdir, photos):
    weight = numpy_helper.from_array(np.eye(3, 4, dtype=np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "W"], ["y"]),
        ],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 24, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[weight],
    )
    path = workdir / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    refused = run("--model", path, photos / "a.jpg")
    assert (
        refused.exit_code == 1 and "no alexnet-deploy metadata" in refused.output and "--labels FILE" in refused.output
    )
    (workdir / "names.txt").write_text("red\ngreen\nblue\nnone\n")
    result = run(
        "--model",
        path,
        "--labels",
        workdir / "names.txt",
        "--json",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
        photos / "a.jpg",
    )
    assert result.exit_code == 0, result.output
    [row] = json_lines(result)
    assert (
        set(row["labels"]) == {"red", "green", "blue", "none"} and row["labels"][-1] == "none"
    )  # score 0 < mean pixel


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_on_linux_is_a_clear_error(workdir, photos):
    (workdir / "m.mlpackage").mkdir(exist_ok=True)
    result = run("--model", workdir / "m.mlpackage", "--backend", "coreml", photos / "a.jpg")
    assert result.exit_code == 1 and "Core ML prediction needs macOS" in result.output


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_a_broken_mlpackage_off_macos_is_one_line_from_the_reference_evaluator(workdir, photos):
    # auto picks coreml-reference off macOS; an empty package must still fail in one line, naming it
    (workdir / "m.mlpackage").mkdir(exist_ok=True)
    result = run("--model", workdir / "m.mlpackage", photos / "a.jpg")
    assert result.exit_code == 1 and "m.mlpackage" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.output and "alexnet-run -m model.onnx" in result.output


TINY_ONNX = Path(__file__).parent / "data" / "tiny.onnx"
CLI = "import sys; from runtime.cli import main; sys.exit(main())"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("flags, images", [([], 1), (["--json"], 1), (["--json"], 20)], ids=["text", "json", "bar"])
def test_results_to_a_full_disk_are_a_one_line_error(tmp_path, flags, images):
    """`alexnet-run ... > /dev/full` (issue 26, item 7a): exit 1 and one line, not a traceback; 20
    images write through the progress bar."""
    for i in range(images):
        picture(i).save(tmp_path / f"{i:02}.png")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-c", CLI, "-m", TINY_ONNX, *flags, tmp_path],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("model: ") and "img/s" not in line]
    assert errors == ["Error: cannot write to stdout: No space left on device"], proc.stderr
