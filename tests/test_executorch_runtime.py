"""The executorch runtime backend (a plugin: ExecuTorch's Python runtime links libtorch): a tiny
program lowered here (tests/tiny_executorch.py) runs through runtime.load, alexnet-run and
runtime.agree; damaged files are refused in one line, changed weights by the integrity check."""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import struct
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tiny_executorch import CLASS_NAMES, MAX_BATCH, SIZE, tiny_metadata, tiny_module, write_tiny_pte

import runtime
from runtime.backends import BackendUnavailableError, ModelLoadError, ModelRunError, detect_backend, get_backend
from runtime.cli import main as run_main
from runtime.integrity import IntegrityError, pte_sha256, weights_sha256
from runtime.metadata import ArtifactMetadata, MetadataError

pytest.importorskip("executorch", reason="the executorch backend needs executorch (pip install '.[executorch]')")
# Lowering the tiny program: torch.export's own deprecation, not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

BATCH = np.random.default_rng(1).standard_normal((40, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def module():
    return tiny_module()


@pytest.fixture(scope="module")
def pte(module, tmp_path_factory):
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny.pte", module, tiny_metadata())


@pytest.fixture(scope="module")
def foreign(module, tmp_path_factory):
    return write_tiny_pte(tmp_path_factory.mktemp("foreign") / "foreign.pte", module, None)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder / "0.png"


def expected(module, batch):
    with torch.no_grad():
        return module(torch.from_numpy(batch)).numpy()


def one_line(call, error, *words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_a_pte_runs_on_executorch_by_its_suffix_in_calls_of_at_most_15(pte, module, monkeypatch):
    assert detect_backend(pte) == "executorch"
    with runtime.load(pte, threads=1) as predictor:
        assert predictor.backend_name == "executorch" and predictor.device == "cpu"
        assert predictor.max_batch is None and predictor.call_limit == MAX_BATCH == predictor.batch_size
        sizes = []
        run = predictor.backend.run
        monkeypatch.setattr(predictor.backend, "run", lambda batch: sizes.append(len(batch)) or run(batch))
        logits = predictor.predict_logits(BATCH)  # 40 images: ExecuTorch alone takes at most 15
        assert sizes == [15, 15, 10]
        np.testing.assert_allclose(logits, expected(module, BATCH), rtol=1e-5, atol=1e-5)


def test_the_metadata_round_trips(pte):
    with runtime.load(pte) as predictor:
        embedded = predictor.backend.metadata
        assert embedded == tiny_metadata(weights_sha256=pte_sha256(pte))
        assert ArtifactMetadata.from_json(embedded.to_json()) == embedded
        assert predictor.metadata.class_names == CLASS_NAMES and predictor.metadata.max_batch == MAX_BATCH
        assert predictor.metadata.format == "executorch" and predictor.metadata.preprocess.crop == SIZE


def test_close_drops_the_program(pte):
    predictor = runtime.load(pte)
    program = weakref.ref(predictor.backend._program)
    predictor.close()
    gc.collect()
    assert program() is None


def test_a_program_without_metadata_runs_with_labels(foreign, module):
    one_line(lambda: runtime.load(foreign), MetadataError, "carries no alexnet-deploy metadata", "--labels")
    one_line(lambda: runtime.load(foreign, labels=["a", "b"]), MetadataError, "outputs 3 classes")
    with runtime.load(foreign, labels=["a", "b", "c"]) as predictor:
        # ExecuTorch reports the memory plan's batch (the bound): a foreign program is padded to it
        assert predictor.max_batch == MAX_BATCH and predictor.metadata.format == "executorch"
        np.testing.assert_allclose(predictor.predict_logits(BATCH[:17]), expected(module, BATCH[:17]), atol=1e-5)


def test_metadata_that_allows_more_than_the_plan_is_capped_to_it(module, tmp_path):
    pte = write_tiny_pte(tmp_path / "m.pte", module, tiny_metadata(max_batch=None))
    with runtime.load(pte) as predictor:
        assert predictor.call_limit == MAX_BATCH
        assert predictor.predict_logits(BATCH).shape == (40, len(CLASS_NAMES))


def truncate(data):
    return data[: len(data) // 2]


def flip_program_byte(data):
    return data[:200] + bytes([data[200] ^ 0xFF]) + data[201:]


def without_header(data):
    return data[:8] + b"xx00" + data[12:]


BAD_FILES = {
    "garbage": (lambda data: b"this is not an ExecuTorch program" * 4, "no ExecuTorch program"),
    "empty": (lambda data: b"", "is empty"),
    "truncated": (truncate, "is truncated"),
    "short by 10 bytes": (lambda data: data[:-10], "is truncated"),
    "a corrupt program": (flip_program_byte, "ExecuTorch cannot load"),
    "no extended header": (without_header, "no ExecuTorch extended header"),  # the digest needs it
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_damaged_file_is_refused_in_one_line(pte, tmp_path, name):
    damage, words = BAD_FILES[name]
    bad = tmp_path / "bad.pte"
    bad.write_bytes(damage(pte.read_bytes()))
    one_line(lambda: runtime.load(bad), ModelLoadError, str(bad), words)
    result = CliRunner().invoke(run_main, ["-m", str(bad), str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error:") and result.output.count("\n") == 1, (
        result.output
    )


def test_a_folder_or_a_fifo_is_refused_in_one_line(tmp_path):
    (tmp_path / "dir.pte").mkdir()
    one_line(lambda: runtime.load(tmp_path / "dir.pte"), ModelLoadError, "directory")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.pte")
        one_line(lambda: runtime.load(tmp_path / "fifo.pte"), ModelLoadError, "FIFO")


def test_a_changed_weight_is_refused_unless_unverified(pte, tmp_path, module):
    data = bytearray(pte.read_bytes())
    base = struct.unpack_from("<Q", data, 24)[0]  # the extended header's segment_base_offset
    data[base + (len(data) - base) // 2] ^= 0x01
    changed = tmp_path / "changed.pte"
    changed.write_bytes(bytes(data))
    one_line(lambda: runtime.load(changed), IntegrityError, "do not match the SHA-256")
    with runtime.load(changed, verify=False) as predictor:  # ExecuTorch itself runs it
        assert predictor.predict_logits(BATCH[:2]).shape == (2, len(CLASS_NAMES))


def test_a_damaged_xnnpack_blob_is_refused_before_executorch_reads_it(pte, tmp_path):
    """ExecuTorch 1.4.1 aborts the process when a delegate blob's header holds a non-UTF-8 byte (its
    logger throws while initializing the method); the hash is checked first. In a child process,
    so that a regression fails this test instead of killing the session."""
    data = bytearray(pte.read_bytes())
    base = struct.unpack_from("<Q", data, 24)[0]
    assert data[base + 4 : base + 8] == b"XH00"  # XNNPACK's blob header
    data[base + 4] ^= 0xFF
    damaged = tmp_path / "damaged.pte"
    damaged.write_bytes(bytes(data))
    code = "import runtime, sys\ntry:\n    runtime.load(sys.argv[1])\nexcept runtime.DeployError as e:\n    print(type(e).__name__, e)"
    proc = subprocess.run([sys.executable, "-c", code, str(damaged)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("IntegrityError"), proc.stdout + proc.stderr


def test_the_digest_needs_the_header_and_segments(foreign, tmp_path):
    data = foreign.read_bytes()
    files = {
        "none.pte": data[:24] + struct.pack("<Q", 0) + data[32:],  # segment_base_offset 0: no segments
        "past.pte": data[:24] + struct.pack("<Q", len(data)) + data[32:],  # segments at the end of the file
        "header.pte": without_header(data),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        one_line(lambda: weights_sha256("executorch", tmp_path / name), IntegrityError, "is damaged")
    assert pte_sha256(foreign) == weights_sha256("executorch", foreign)


def test_a_batch_over_the_plan_fails_in_one_useful_line(pte):
    with runtime.load(pte) as predictor:
        one_line(
            lambda: predictor.backend.run(np.zeros((16, 3, SIZE, SIZE), np.float32)),
            ModelRunError,
            "at most 15",
            "NotSupported",
        )


def test_another_device_is_refused(pte):
    one_line(lambda: runtime.load(pte, device="cuda"), BackendUnavailableError, "CPU")


def test_missing_executorch_says_how_to_install_it(pte, monkeypatch):
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # `import` raises ImportError
    one_line(lambda: runtime.load(pte), BackendUnavailableError, "pip install '.[executorch]'")


def test_a_plugin_that_cannot_be_imported_names_its_extra(monkeypatch):
    import runtime.backends as backends

    class Broken:
        name, value = "executorch", "alexnet.executorch_plugin:ExecuTorchBackend"

        def load(self):
            raise ImportError("No module named 'torch'", name="torch")

    monkeypatch.setattr(backends, "entry_points", lambda group: [Broken()])
    one_line(lambda: get_backend("executorch"), BackendUnavailableError, "pip install '.[executorch]'")


def test_alexnet_run_on_a_pte(pte, image):
    result = CliRunner().invoke(run_main, ["--model", str(pte), "--json", "--topk", "1", str(image)])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("{")]
    with runtime.load(pte) as predictor:
        [prediction] = predictor.predict(image, topk=1)
    assert f'"labels": ["{prediction.labels[0]}"]' in line


def test_agree_lists_a_pte_beside_its_torchscript(pte, module, image, tmp_path):
    from runtime.agree import main as agree
    from runtime.metadata import METADATA_KEY

    scripted = tmp_path / "tiny.pt"
    metadata = dataclasses.replace(tiny_metadata(), format="torchscript", max_batch=None)
    traced = torch.jit.trace(module, torch.zeros(1, 3, SIZE, SIZE))
    torch.jit.save(traced, str(scripted), _extra_files={f"{METADATA_KEY}.json": metadata.to_json()})
    copy = shutil.copy(pte, tmp_path / "copy.pte")
    result = CliRunner().invoke(agree, [str(scripted), str(copy), "--images", str(image.parent)])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[1].split()[1:3] == ["torchscript", "3/3"]
    assert rows[2].split()[1:3] == ["executorch", "3/3"]
