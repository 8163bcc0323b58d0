"""The litert runtime backend in the torch-free install: the tiny classifier built as .tflite bytes
(tests/tiny_litert.py, float and full-integer int8) runs through runtime.load and alexnet-run at its
fixed batch, its metadata and weights digest survive re-writing, and every damaged or hostile file
is refused in one line (exit 1 from the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_litert import CLASS_NAMES, SIZE, build_tiny_tflite, int8_reference_logits, reference_logits, tiny_weights
from tiny_litert import write_tiny_tflite as write

import runtime
from runtime import DeployError, formats
from runtime.backends import BackendUnavailableError, ModelLoadError, ModelRunError, detect_backend
from runtime.cli import main as run_main
from runtime.integrity import DIGESTS, IntegrityError
from runtime.metadata import METADATA_KEY, MetadataError
from runtime.tflite_model import add_metadata, buffers_sha256, read_metadata, schema, tflite_sha256

pytestmark = pytest.mark.runtime
pytest.importorskip(
    "ai_edge_litert", reason="the litert backend needs ai-edge-litert (pip install '.[litert-runtime]')"
)

BATCH = np.random.default_rng(1).standard_normal((17, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    return {"fp32": write(folder / "m.tflite"), "int8": write(folder / "m8.tflite", int8=True)}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def refused(call, error, *words):
    """`call()` raises `error` with a one-line message holding `words`."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert all(w in message for w in words), message


def alexnet_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def cli_refuses(*args, words=()):
    result = alexnet_run(*args)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert all(w in lines[0] for w in words), result.output


def rewritten(data, change):
    """`data` with `change(model)` applied to its object-API form (for models the builder does not make)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(data)
    change(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_tflite_runs_at_its_fixed_batch_with_its_metadata(models, precision):
    path = models[precision]
    assert detect_backend(path) == "litert" and formats.for_suffix(".TFLITE").fixed_batch
    with runtime.load(path, threads=1) as predictor:
        assert predictor.backend_name == "litert" and predictor.device == "CPU" and predictor.backend.threads == 1
        metadata = predictor.metadata
        assert metadata.class_names == CLASS_NAMES and metadata.format == "litert" and metadata.precision == precision
        assert metadata.input_shape == (2, 3, SIZE, SIZE) and predictor.max_batch == 2  # the file's batch
        assert metadata.weights_sha256 == tflite_sha256(path)
        for n in (1, 2, 5, 17):  # split into 2s, the last part padded
            logits = predictor.predict_logits(BATCH[:n])
            if precision == "fp32":
                np.testing.assert_allclose(logits, reference_logits(BATCH[:n]), rtol=1e-5, atol=1e-4)
            else:  # TFLite requantizes in fixed point: at most one output step (0.4) from numpy's
                np.testing.assert_allclose(logits, int8_reference_logits(BATCH[:n]), atol=0.41)
                assert np.abs(logits - reference_logits(BATCH[:n])).max() < 2.0  # and near the float model


def test_the_int8_model_takes_and_returns_int8_tensors_and_threads_default_to_the_cores(models):
    with runtime.load(models["int8"]) as predictor:
        backend = predictor.backend
        assert backend.input_type == np.int8 and backend.input_quant == (pytest.approx(0.035), -6)
        assert backend.output_quant == (pytest.approx(0.4), 5) and backend.io.input_dtype == np.float32
        assert backend.threads >= 1  # the interpreter's own default would be one thread


def test_metadata_round_trips_and_is_replaced_in_place(models):
    data = models["fp32"].read_bytes()
    with runtime.load(models["fp32"]) as predictor:
        assert read_metadata(data) == predictor.backend.metadata.to_json()
    again = add_metadata(data, '{"replaced": true}')
    assert read_metadata(again) == '{"replaced": true}'
    before, after = schema().Model.GetRootAs(data, 0), schema().Model.GetRootAs(again, 0)
    assert after.MetadataLength() == before.MetadataLength() == 1  # replaced, not a second entry
    assert after.BuffersLength() == before.BuffersLength()  # no orphan buffer left behind
    assert buffers_sha256(again) == buffers_sha256(data)


def test_other_metadata_entries_are_kept_and_outside_the_digest():
    # litert-torch writes min_runtime_version and keep_stablehlo_constant entries of its own.
    def converter_entry(model):
        model.buffers.append(schema().BufferT(data=np.frombuffer(b"2.12.0\0\0", np.uint8)))
        model.metadata = [schema().MetadataT(name="min_runtime_version", buffer=len(model.buffers) - 1)]

    foreign = build_tiny_tflite(metadata=False)
    converted = rewritten(foreign, converter_entry)
    assert buffers_sha256(converted) == buffers_sha256(foreign)
    ours = add_metadata(converted, '{"x": 1}')
    assert read_metadata(ours) == '{"x": 1}' and buffers_sha256(ours) == buffers_sha256(foreign)
    model = schema().Model.GetRootAs(ours, 0)
    assert [model.Metadata(i).Name() for i in range(model.MetadataLength())] == [
        b"min_runtime_version",
        METADATA_KEY.encode(),
    ]


def flip_weight(path):
    """Flip one bit of one weight in the file; the weight matrix (in, out) it now holds."""
    data = bytearray(path.read_bytes())
    weight = tiny_weights()[0].T.tobytes()  # FULLY_CONNECTED keeps its weights (out, in)
    offset = bytes(data).find(weight)
    assert offset > 0
    data[offset + len(weight) // 2] ^= 1
    path.write_bytes(bytes(data))
    return np.frombuffer(bytes(data[offset : offset + len(weight)]), np.float32).reshape(3, -1).T


def test_the_digest_ignores_metadata_and_sees_a_flipped_weight(tmp_path, image):
    assert DIGESTS["litert"] is tflite_sha256
    foreign, stamped = build_tiny_tflite(metadata=False), build_tiny_tflite()
    assert buffers_sha256(foreign) == buffers_sha256(stamped) and read_metadata(foreign) is None
    path = write(tmp_path / "m.tflite")
    weight = flip_weight(path)
    assert tflite_sha256(path) != buffers_sha256(stamped)
    refused(lambda: runtime.load(path), IntegrityError, str(path), "do not match the SHA-256 recorded at export")
    cli_refuses("-m", path, image, words=["do not match the SHA-256"])
    with runtime.load(path, verify=False) as predictor:  # --no-verify: what the file holds is what runs
        expected = BATCH.reshape(len(BATCH), -1) @ weight + tiny_weights()[1]
        np.testing.assert_allclose(predictor.predict_logits(BATCH), expected, rtol=1e-5, atol=1e-4)
    assert alexnet_run("-m", path, "--no-verify", "--json", image).exit_code == 0
    path.write_bytes(stamped[:300])  # the digest reads through a memory map: a fault still closes it
    refused(lambda: tflite_sha256(path), ModelLoadError, str(path), "damaged TFLite model")


def test_a_tflite_without_a_recorded_hash_loads_unverified(tmp_path):
    path = write(tmp_path / "m.tflite", stamp=False)
    flip_weight(path)
    with runtime.load(path) as predictor:
        assert predictor.metadata.weights_sha256 == "" and predictor.metadata.class_names == CLASS_NAMES


def test_a_tflite_without_our_metadata_needs_labels(tmp_path, image):
    foreign = write(tmp_path / "foreign.tflite", metadata=False, batch=3)
    refused(lambda: runtime.load(foreign), MetadataError, "carries no alexnet-deploy metadata", "--labels")
    cli_refuses("-m", foreign, image, words=["--labels"])
    refused(lambda: runtime.load(foreign, labels=["a", "b"]), MetadataError, "outputs 3 classes")
    with runtime.load(foreign, labels=["a", "b", "c"]) as predictor:  # the graph fixes 8x8 and the batch
        assert predictor.metadata.class_names == ("a", "b", "c") and predictor.metadata.format == "litert"
        assert predictor.max_batch == 3 and predictor.metadata.precision == "fp32"
        np.testing.assert_allclose(predictor.predict_logits(BATCH), reference_logits(BATCH), rtol=1e-5, atol=1e-4)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\nthree\n")
    result = alexnet_run("-m", foreign, "--labels", labels, "--json", image)
    assert result.exit_code == 0 and '"labels": [' in result.output, result.output


def test_alexnet_run_on_a_tflite(models, image):
    result = alexnet_run("--model", models["int8"], "--json", "--topk", "1", "--threads", "1", image)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("{")]
    with runtime.load(models["int8"]) as predictor:
        [expected] = predictor.predict(image, topk=1)
    assert str(image) in line and f'"labels": ["{expected.labels[0]}"]' in line


def model_bytes(data):
    return lambda path: path.write_bytes(data)


def truncated(path):
    path.write_bytes(build_tiny_tflite()[:300])


def fifo(path):
    os.mkfifo(path)


def with_metadata_index(index):
    def change(model):
        model.metadata[0].buffer = index

    return lambda path: path.write_bytes(rewritten(build_tiny_tflite(), change))


def with_metadata_text(text):
    def change(model):
        model.buffers[model.metadata[0].buffer].data = np.frombuffer(text, np.uint8)

    return lambda path: path.write_bytes(rewritten(build_tiny_tflite(), change))


def two_outputs(path):
    def change(model):
        model.subgraphs[0].outputs = [4, 5]

    path.write_bytes(rewritten(build_tiny_tflite(metadata=False), change))


def grayscale_input(path):
    def change(model):
        model.subgraphs[0].tensors[0].shape = [2, 192, 1, 1]

    path.write_bytes(rewritten(build_tiny_tflite(metadata=False), change))


BAD_FILES = {
    "garbage": (model_bytes(os.urandom(64)), ModelLoadError, ["not a TFLite model", "TFL3"]),
    "empty": (model_bytes(b""), ModelLoadError, ["is empty"]),
    "an ONNX file": (model_bytes(b"\x08\x08\x12\x07pytorch" * 4), ModelLoadError, ["not a TFLite model"]),
    "truncated": (truncated, ModelLoadError, ["damaged TFLite model"]),
    # An empty root table: no metadata of ours to read, and the interpreter's verifier refuses it.
    "identifier only": (model_bytes(b"\x00" * 4 + b"TFL3"), ModelLoadError, ["LiteRT cannot load", "not a valid"]),
    "metadata buffer out of range": (with_metadata_index(999), ModelLoadError, ["names buffer 999"]),
    "metadata not UTF-8": (with_metadata_index(1), MetadataError, ["not UTF-8"]),  # the reshape's int32 shape
    "metadata not JSON": (with_metadata_text(b"{oops"), MetadataError, ["not valid JSON"]),
    "a FIFO": (fifo, ModelLoadError, ["FIFO"]),
    "two outputs": (two_outputs, ModelLoadError, ["1 inputs and 2 outputs"]),
    "not (N, 3, H, W)": (grayscale_input, ModelLoadError, ["(2, 192, 1, 1)", "(N, 3, H, W)"]),
}


@pytest.mark.timeout(60)  # a FIFO read would block forever
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_is_refused_in_one_line(tmp_path, image, name, verify):
    breaker, error, words = BAD_FILES[name]
    path = tmp_path / "m.tflite"
    breaker(path)
    refused(lambda: runtime.load(path, verify=verify, labels=list(CLASS_NAMES)), error, *words)
    args = ["-m", path, "--labels", tmp_path / "labels.txt", "--verify" if verify else "--no-verify", image]
    (tmp_path / "labels.txt").write_text("\n".join(CLASS_NAMES))
    cli_refuses(*args, words=words)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mutated_files_run_or_fail_in_one_line(tmp_path, precision):
    # Seeded byte edits (a few thousand of them found no other outcome, and no crash of the interpreter).
    data, rng, path = build_tiny_tflite(int8=precision == "int8"), np.random.default_rng(5), tmp_path / "m.tflite"
    for _ in range(150):
        mutated = bytearray(data)
        for at in rng.integers(0, len(data), rng.choice([1, 3, 10])):
            mutated[at] = rng.integers(0, 256)
        path.write_bytes(bytes(mutated))
        try:
            with runtime.load(path, labels=list(CLASS_NAMES)) as predictor:
                predictor.predict_logits(BATCH[:3])
        except DeployError as exc:
            assert "\n" not in str(exc), str(exc)


def test_a_tflite_that_is_a_folder(tmp_path, image):
    folder = tmp_path / "d.tflite"
    folder.mkdir()
    refused(lambda: runtime.load(folder), ModelLoadError, "is a directory")
    refused(lambda: runtime.load(folder, backend="litert"), ModelLoadError, "directory")
    cli_refuses("-m", folder, image, words=["directory"])


def test_a_batch_the_file_does_not_take_fails_in_one_useful_line(models):
    with runtime.load(models["fp32"]) as predictor:
        refused(lambda: predictor.backend.run(np.zeros((1, 3, SIZE, SIZE), np.float32)), ModelRunError, "(1, 3, 8, 8)")


def test_another_device_is_refused(models, image):
    refused(lambda: runtime.load(models["fp32"], device="cuda"), BackendUnavailableError, "--device cuda")
    cli_refuses("-m", models["fp32"], "--device", "cuda", image, words=["--device cuda"])


def test_without_ai_edge_litert_the_backend_names_its_extra(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails as if not installed
    refused(lambda: runtime.load(models["fp32"]), BackendUnavailableError, "[litert-runtime]")


def test_running_a_tflite_imports_no_torch(models, image):
    code = (
        "import sys, runtime; p = runtime.load(sys.argv[1]); assert p.predict(sys.argv[2])[0].ok; "
        "bad = sorted(m for m in ('torch', 'onnx', 'tensorflow') if m in sys.modules); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(models["int8"]), str(image)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
