"""Console scripts on an install that lacks their extra: one line naming the extra, exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.launch import COMMANDS

pytestmark = pytest.mark.runtime

# Run a launcher with torch (and what needs it) unimportable, as on an edge install.
BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'matplotlib', 'onnx', 'openvino'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1], '--help']
from runtime.launch import launch
launch(sys.argv[0])
"""


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_missing_extra_is_one_line(script):
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, script], capture_output=True, text=True, timeout=120)
    extra = COMMANDS[script][1]
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert f"needs the [{extra}] extra" in done.stderr and f"alexnet-deploy[{extra}]" in done.stderr


def test_own_import_errors_are_not_blamed_on_an_extra(monkeypatch):
    import runtime.launch as launch

    monkeypatch.setitem(COMMANDS, "alexnet-broken", ("runtime.no_such_module", "train"))
    with pytest.raises(ImportError):
        launch.launch("alexnet-broken")
