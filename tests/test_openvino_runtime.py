"""The openvino runtime backend in the torch-free install: an IR converted from the committed tiny
ONNX by OpenVINO's own frontend (tests/tiny_openvino.py) runs through runtime.load and alexnet-run,
and every damaged, swapped or hostile file beside it is refused in one line (exit 1 from the CLI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_onnx import CLASS_NAMES, SIZE, reference_logits, tiny_weights
from tiny_openvino import write_tiny_ir

import runtime
from runtime import formats
from runtime.backends import BackendUnavailableError, ModelLoadError, ModelRunError, detect_backend
from runtime.cli import main as run_main
from runtime.integrity import IntegrityError
from runtime.metadata import MetadataError

pytestmark = pytest.mark.runtime
ov = pytest.importorskip("openvino", reason="the openvino backend needs openvino (pip install '.[openvino]')")

BATCH = np.random.default_rng(1).standard_normal((17, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    return write_tiny_ir(tmp_path_factory.mktemp("ir"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def copy_ir(ir, folder):
    """The IR's two files as folder/m.xml and folder/m.bin (each test breaks its own copy)."""
    folder.mkdir()
    for suffix in (".xml", ".bin"):
        shutil.copy(ir.with_suffix(suffix), folder / f"m{suffix}")
    return folder / "m.xml"


def refused(call, error, *words):
    """`call()` raises `error` with a one-line message holding `words` (and no C++ trace of OpenVINO's)."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "Exception from" not in message, message
    assert all(w in message for w in words), message


def alexnet_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def cli_refuses(*args, words=()):
    result = alexnet_run(*args)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert all(w in lines[0] for w in words), result.output


def test_an_ir_runs_on_openvino_with_its_metadata_and_any_batch(ir):
    assert detect_backend(ir) == "openvino"
    with runtime.load(ir, device="cpu", threads=1) as predictor:
        assert predictor.backend_name == "openvino" and predictor.device == "CPU"
        assert predictor.metadata.class_names == CLASS_NAMES and predictor.metadata.format == "openvino"
        assert predictor.max_batch is None  # dynamic batch: one compiled model takes every size
        for n in (1, 5, 17):
            logits = predictor.predict_logits(BATCH[:n])
            np.testing.assert_allclose(logits, reference_logits(BATCH[:n]), rtol=1e-5, atol=1e-5)


def test_the_compiled_model_runs_in_f32_on_the_threads_asked(ir):
    # Without the hint, OpenVINO's CPU plugin runs an fp32 model in bf16 on AVX-512 BF16/AMX CPUs.
    with runtime.load(ir, threads=1) as predictor:
        compiled = predictor.backend.compiled
        assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def test_a_fixed_batch_ir_keeps_its_batch_and_is_padded_to_it(tmp_path):
    with runtime.load(write_tiny_ir(tmp_path, batch=2)) as predictor:
        assert predictor.max_batch == 2
        np.testing.assert_allclose(predictor.predict_logits(BATCH[:5]), reference_logits(BATCH[:5]), atol=1e-5)


def test_alexnet_run_on_an_ir(ir, image):
    result = alexnet_run("--model", ir, "--json", "--topk", "1", "--threads", "1", image)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("{")]
    with runtime.load(ir) as predictor:
        [expected] = predictor.predict(image, topk=1)
    assert str(image) in line and f'"labels": ["{expected.labels[0]}"]' in line


def test_an_ir_without_our_metadata_needs_labels(tmp_path, image):
    foreign = write_tiny_ir(tmp_path, metadata=False)
    refused(lambda: runtime.load(foreign), MetadataError, "carries no alexnet-deploy metadata", "--labels")
    cli_refuses("-m", foreign, image, words=["--labels"])
    refused(lambda: runtime.load(foreign, labels=["a", "b"]), MetadataError, "outputs 3 classes")
    with runtime.load(foreign, labels=["a", "b", "c"]) as predictor:  # the graph fixes 8x8: no --image-size
        assert predictor.metadata.class_names == ("a", "b", "c") and predictor.metadata.format == "openvino"
        np.testing.assert_allclose(predictor.predict_logits(BATCH), reference_logits(BATCH), rtol=1e-5, atol=1e-5)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\nthree\n")
    with runtime.load(foreign, labels=labels) as predictor:
        assert predictor.metadata.class_names == ("one", "two", "three")
    result = alexnet_run("-m", foreign, "--labels", labels, "--json", image)
    assert result.exit_code == 0 and '"labels": [' in result.output, result.output


def swap_rt_info_value(xml, value):
    text = xml.read_text()
    xml.write_text(re.sub(r'(<alexnet_deploy value=")[^"]*"', lambda m: f'{m[1]}{value}"', text, count=1))


def unlink_bin(xml):
    xml.with_suffix(".bin").unlink()


def halve_bin(xml):
    weights = xml.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def bin_linked_outside(xml):
    outside = xml.parent.parent / "elsewhere.bin"
    xml.with_suffix(".bin").rename(outside)
    xml.with_suffix(".bin").symlink_to(outside)


def bin_fifo(xml):
    unlink_bin(xml)
    os.mkfifo(xml.with_suffix(".bin"))


def bin_folder(xml):
    unlink_bin(xml)
    xml.with_suffix(".bin").mkdir()


def xml_text(text):
    return lambda xml: xml.write_text(text)


def xml_sparse_65_mib(xml):
    with open(xml, "r+b") as handle:
        handle.truncate(65 << 20)


LAUGHS = "".join(f'<!ENTITY {b} "{f"&{a};" * 10}">' for a, b in zip("abcdefgh", "bcdefghi"))
BAD_IRS = {
    "bin missing": (unlink_bin, ModelLoadError, ["m.bin is missing"]),
    # Neither the pre-checks nor the hash get here first: OpenVINO's own range check, its trace cut.
    "bin truncated": (halve_bin, ModelLoadError, ["OpenVINO cannot read", "Incorrect weights in bin file"]),
    "bin links out": (bin_linked_outside, ModelLoadError, ["m.bin points outside the model's folder"]),
    "bin a FIFO": (bin_fifo, ModelLoadError, ["m.bin is a FIFO"]),
    "bin a folder": (bin_folder, ModelLoadError, ["m.bin is a directory"]),
    "xml truncated": (lambda xml: xml.write_bytes(xml.read_bytes()[:200]), ModelLoadError, ["corrupt XML"]),
    "xml empty": (xml_text(""), ModelLoadError, ["not an OpenVINO IR", "corrupt XML"]),
    "xml not a net": (xml_text("<?xml version='1.0'?><html/>"), ModelLoadError, ["not an OpenVINO IR", "not <net>"]),
    "xml laughs": (xml_text(f'<!DOCTYPE net [<!ENTITY a "aaaa">{LAUGHS}]><net>&i;</net>'), ModelLoadError, ["XML"]),
    "xml XXE": (xml_text('<!DOCTYPE n [<!ENTITY x SYSTEM "/etc/passwd">]><net>&x;</net>'), ModelLoadError, ["XML"]),
    "xml 65 MiB": (xml_sparse_65_mib, ModelLoadError, ["larger than 64 MiB"]),
    "net no input": (xml_text('<net name="x" version="11"><layers/><edges/></net>'), ModelLoadError, ["0 inputs"]),
    "rt_info not JSON": (lambda xml: swap_rt_info_value(xml, "{oops"), MetadataError, ["not valid JSON"]),
}


@pytest.mark.timeout(60)  # a FIFO read would block forever
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
@pytest.mark.parametrize("name", list(BAD_IRS))
def test_a_bad_ir_is_refused_in_one_line(ir, image, tmp_path, name, verify):
    breaker, error, words = BAD_IRS[name]
    xml = copy_ir(ir, tmp_path / "m")
    breaker(xml)
    refused(lambda: runtime.load(xml, verify=verify), error, *words)
    cli_refuses("-m", xml, "--json", "--verify" if verify else "--no-verify", image, words=words)


def test_an_xml_that_is_a_folder(tmp_path, image):
    folder = tmp_path / "d.xml"
    folder.mkdir()
    refused(lambda: runtime.load(folder), ModelLoadError, "is a directory")
    refused(lambda: runtime.load(folder, backend="openvino"), ModelLoadError, "directory")
    cli_refuses("-m", folder, image, words=["directory"])


def test_a_bin_swapped_for_another_models_is_refused_unless_unverified(ir, image, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    weights = xml.with_suffix(".bin")
    data, (weight, bias) = weights.read_bytes(), tiny_weights()
    assert data.endswith(bias.tobytes())  # the bias is the .bin's last constant (tests/tiny_openvino.py)
    other_bias = np.float32([4.0, -4.0, 0.5])
    weights.write_bytes(data[: -bias.nbytes] + other_bias.tobytes())  # the same graph, other weights
    refused(lambda: runtime.load(xml), IntegrityError, "do not match the SHA-256 recorded at export")
    cli_refuses("-m", xml, image, words=["do not match the SHA-256"])
    with runtime.load(xml, verify=False) as predictor:  # --no-verify: what the .bin holds is what runs
        logits = predictor.predict_logits(BATCH)
    np.testing.assert_allclose(logits, BATCH.reshape(len(BATCH), -1) @ weight + other_bias, rtol=1e-5, atol=1e-5)
    assert alexnet_run("-m", xml, "--no-verify", "--json", image).exit_code == 0


def test_an_ir_exported_before_hashes_loads_unverified(tmp_path):
    with runtime.load(write_tiny_ir(tmp_path, stamp=False)) as predictor:
        assert predictor.metadata.weights_sha256 == "" and predictor.metadata.class_names == CLASS_NAMES


def test_a_bin_that_is_a_symlink_loop(ir, tmp_path):
    xml = copy_ir(ir, tmp_path / "m")
    unlink_bin(xml)
    xml.with_suffix(".bin").symlink_to("m.bin")
    refused(lambda: runtime.load(xml), ModelLoadError, "m.bin")


def test_a_batch_the_graph_does_not_take_fails_in_one_useful_line(ir):
    with runtime.load(ir) as predictor:
        refused(
            lambda: predictor.backend.run(np.zeros((1, 3, 9, 9), np.float32)),
            ModelRunError,
            "(1, 3, 9, 9)",
            "incompatible",
        )


def test_another_device_is_refused(ir, image):
    refused(lambda: runtime.load(ir, device="cuda"), BackendUnavailableError, "--device cuda")
    cli_refuses("-m", ir, "--device", "cuda", image, words=["--device cuda"])


def test_the_format_table_sends_xml_to_openvino():
    assert formats.for_suffix(".xml").backend == "openvino" and formats.for_suffix(".XML").name == "openvino"
    assert ".xml" in formats.runnable_suffixes() and formats.get("openvino").companions == (".bin",)


def test_converting_and_running_an_ir_imports_no_torch_or_onnx(tmp_path, image):
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]); from tiny_openvino import write_tiny_ir; import runtime; "
        "p = runtime.load(write_tiny_ir(sys.argv[1])); assert p.predict(sys.argv[2])[0].ok; "
        "bad = sorted(m for m in ('torch', 'onnx') if m in sys.modules); sys.exit(f'imported {bad}' if bad else 0)"
    )
    args = [sys.executable, "-c", code, str(tmp_path), str(image), str(Path(__file__).parent)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
