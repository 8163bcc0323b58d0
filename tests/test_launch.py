"""Console scripts on an install that lacks their extra: one line naming the extra, exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_onnx import TINY_ONNX

from runtime.launch import COMMANDS

pytestmark = pytest.mark.runtime

# Run a launcher with torch (and what needs it) and kserve unimportable, as on an edge install.
BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'matplotlib', 'onnx', 'openvino', 'kserve', 'ray'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
from runtime.launch import launch
launch(sys.argv[0])
"""


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_missing_extra_is_one_line(script, tmp_path):
    # alexnet-batch imports Ray when it runs, so that --help works without it: it is given a run to do
    args = [str(TINY_ONNX), str(TINY_ONNX), "-o", str(tmp_path / "out")] if script == "alexnet-batch" else ["--help"]
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, script, *args], capture_output=True, text=True, timeout=120
    )
    extra = COMMANDS[script][1]
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert f"needs the [{extra}] extra" in done.stderr and f"alexnet-deploy[{extra}]" in done.stderr


def test_own_import_errors_are_not_blamed_on_an_extra(monkeypatch):
    import runtime.launch as launch

    monkeypatch.setitem(COMMANDS, "alexnet-broken", ("runtime.no_such_module", "train"))
    with pytest.raises(ImportError):
        launch.launch("alexnet-broken")


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from runtime.cli import main
    from runtime.errors import DeployError

    (tmp_path / "x.png").write_bytes(b"")
    args = ["-m", str(tmp_path), str(tmp_path / "x.png")]  # a directory is not a model: a DeployError
    quiet = CliRunner().invoke(main, args)
    assert quiet.exit_code == 1 and "Error:" in quiet.output and not isinstance(quiet.exception, DeployError)
    monkeypatch.setenv("ALEXNET_DEBUG", "1")
    loud = CliRunner().invoke(main, args)
    assert loud.exit_code == 1 and isinstance(loud.exception, DeployError)
