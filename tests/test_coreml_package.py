"""Core ML packages are confined to their folder (issue 26, item 4): Manifest.json paths and the
weight files are resolved inside the package and must be regular files, and loading never writes
to the package (coremltools' package class rewrote Manifest.json twice per load).

Each crafted package is a copy of the session's small exported fp16 package (conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import runtime
from runtime import ModelLoadError

CLI = "import sys; from runtime.cli import main; sys.exit(main())"
SPEC = "Data/com.apple.CoreML/model.mlmodel"
WEIGHT = "Data/com.apple.CoreML/weights/weight.bin"


@pytest.fixture
def package(cifar_coreml_fp16, tmp_path):
    """A copy of the exported package, in tmp_path/pkg/ (tmp_path itself is "outside" it)."""
    return shutil.copytree(cifar_coreml_fp16, tmp_path / "pkg" / "model.mlpackage")


def set_manifest_path(package, item, path):
    """Point the manifest entry named `item` (model.mlmodel or weights) at `path`."""
    manifest = json.loads((package / "Manifest.json").read_text())
    [entry] = [e for e in manifest["itemInfoEntries"].values() if e["name"] == item]
    entry["path"] = path
    (package / "Manifest.json").write_text(json.dumps(manifest))


def refused(package, *phrases):
    with pytest.raises(ModelLoadError) as caught:
        runtime.load(package)
    message = str(caught.value)
    assert "\n" not in message and str(package) in message
    for phrase in phrases:
        assert phrase in message, message
    return message


def test_a_manifest_path_to_a_model_outside_the_package_is_refused(package, tmp_path):
    # A valid model just outside: before the fix it loaded and ran.
    (tmp_path / "outside").mkdir()
    shutil.copy(package / SPEC, tmp_path / "outside" / "model.mlmodel")
    set_manifest_path(package, "model.mlmodel", "../../outside/model.mlmodel")
    refused(package, "'../../outside/model.mlmodel'", "outside the package")


@pytest.mark.parametrize(
    "item, path, reason",
    [
        ("model.mlmodel", "../../../../../../../../../../etc/passwd", "leads outside the package; not read"),
        ("model.mlmodel", "/etc/passwd", "gives the root model the path '/etc/passwd'; not read"),
        ("weights", "../../../../../../../../../../etc", "leads outside the package; not read"),
        ("weights", "/etc", "gives the weights folder the path '/etc'; not read"),
    ],
)
def test_a_manifest_path_to_a_system_file_is_never_opened(package, item, path, reason):
    # Before the fix coremltools opened /etc/passwd and failed parsing it as a spec.
    set_manifest_path(package, item, path)
    refused(package, reason)


def test_a_weight_file_symlinked_outside_the_package_is_refused(package, tmp_path):
    weight = package / WEIGHT
    shutil.move(weight, tmp_path / "weight.bin")
    weight.symlink_to(tmp_path / "weight.bin")
    refused(package, "weight file 'weight.bin'", "outside the package")


def test_a_root_model_symlinked_outside_the_package_is_refused(package, tmp_path):
    spec = package / SPEC
    shutil.move(spec, tmp_path / "model.mlmodel")
    spec.symlink_to(tmp_path / "model.mlmodel")
    refused(package, "root model", "outside the package")


def test_symlinks_that_stay_inside_the_package_are_followed(package):
    weight = package / WEIGHT
    shutil.move(weight, package / "Data" / "weight.bin")
    weight.symlink_to(package / "Data" / "weight.bin")
    assert runtime.load(package).metadata.num_classes == 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.timeout(120)
def test_a_fifo_weight_file_fails_fast_with_one_line(package, tmp_path):
    weight = package / WEIGHT
    weight.unlink()
    os.mkfifo(weight)
    refused(package, "weight file 'weight.bin' is a FIFO")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    # Before the fix alexnet-run blocked forever opening the FIFO; the timeout turns that into a failure.
    done = subprocess.run(
        [sys.executable, "-c", CLI, "--model", str(package), str(image)], capture_output=True, text=True, timeout=100
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(errors) == 1 and "is a FIFO" in errors[0], done.stderr


def test_a_weights_folder_holding_a_directory_is_refused(package):
    (package / "Data/com.apple.CoreML/weights/sub").mkdir()
    refused(package, "weight file 'sub' is a directory")


def test_loading_leaves_the_manifest_untouched(package):
    manifest = package / "Manifest.json"
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    os.utime(manifest, ns=(1_000_000_000, 1_000_000_000))  # an old mtime: a rewrite within the same tick shows
    before = (before[0], manifest.stat().st_mtime_ns)
    with runtime.load(package) as predictor:
        assert predictor.metadata.num_classes == 5
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert sorted(p.name for p in package.parent.iterdir()) == ["model.mlpackage"]  # nothing written beside it
