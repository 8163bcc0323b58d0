"""runtime.agree: the demo's check that a checkpoint and its exports predict alike."""

import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from runtime.agree import main as agree


def test_checkpoint_and_torchscript_agree(cifar_checkpoint, cifar_torchscript, tmp_path):
    ckpt, scripted = cifar_checkpoint, cifar_torchscript  # the session's (conftest.py)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (80 * i, 30, 200 - 60 * i)).save(tmp_path / "imgs" / f"{i}.png")
    fake = tmp_path / "x.mlpackage"
    fake.mkdir()
    result = CliRunner().invoke(agree, [str(ckpt), str(scripted), str(fake), "--images", str(tmp_path / "imgs")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "pytorch" in lines[1] and "3/3" in lines[1]
    assert "torchscript" in lines[2] and "3/3" in lines[2]
    assert "skipped:" in lines[3]


def test_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.onnx").write_bytes(b"")
    result = CliRunner().invoke(agree, [str(tmp_path / "m.onnx"), "--images", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no images found" in result.output


def broken_checkpoint(good, path):
    """`good` with every weight infinite: the same architecture, outputs that are NaN."""
    import dataclasses

    from alexnet.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(good)
    state = {k: v.clone().fill_(float("inf")) if k.endswith("weight") else v for k, v in ckpt.model_state.items()}
    return save_checkpoint(dataclasses.replace(ckpt, model_state=state), path)


def images(folder):
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (80 * i, 30, 200 - 60 * i)).save(folder / f"{i}.png")
    return folder


def test_a_model_whose_outputs_are_not_finite_disagrees(cifar_checkpoint, tmp_path):
    """Issue 26, item 9: it used to be "skipped" and the check passed."""
    from export import export_artifact

    bad = export_artifact(broken_checkpoint(cifar_checkpoint, tmp_path / "bad.pth"), "onnx", tmp_path / "bad.onnx")
    result = CliRunner().invoke(agree, [str(cifar_checkpoint), str(bad), "--images", str(images(tmp_path / "imgs"))])
    assert result.exit_code == 1, result.output
    header, reference, row = result.output.splitlines()
    assert "3/3" in reference
    assert "onnxruntime" in row and "0/3" in row and "failed on 3/3:" in row and "not finite" in row


def test_numpy_warnings_of_a_broken_package_become_its_row(cifar_checkpoint, tmp_path):
    """The Core ML reference evaluator computes in numpy: infinite weights make it warn at every
    layer. No warning line is printed; the model's row counts them."""
    pytest.importorskip("coremltools", reason="exporting Core ML needs coremltools")
    from export import export_artifact

    broken = broken_checkpoint(cifar_checkpoint, tmp_path / "bad.pth")
    bad = export_artifact(broken, "coreml", tmp_path / "bad.mlpackage", precision="fp32")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.agree", cifar_checkpoint, bad, "--images", images(tmp_path / "imgs")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    header, reference, row = proc.stdout.splitlines()
    assert "failed on 3/3:" in row and "not finite" in row and "warning(s):" in row


def test_an_openvino_ir_is_listed_and_agrees(cifar_checkpoint, tmp_path):
    """Issue 27: the IR runs on the openvino backend beside the checkpoint, picked by its suffix."""
    pytest.importorskip("openvino", reason="the openvino backend needs openvino (the [openvino] extra)")
    from export import export_artifact

    ir = export_artifact(cifar_checkpoint, "openvino", tmp_path / "m.xml")
    result = CliRunner().invoke(agree, [str(cifar_checkpoint), str(ir), "--images", str(images(tmp_path / "imgs"))])
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[2]
    assert row.split()[:3] == [str(ir)[-35:], "openvino", "3/3"]
