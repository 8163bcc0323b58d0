"""runtime.agree: the demo's check that a checkpoint and its exports predict alike."""

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
