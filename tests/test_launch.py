"""Console scripts on an install that lacks their extra: one line naming the extra, exit 1."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_onnx import TINY_ONNX

from runtime import launch
from runtime.launch import COMMANDS, TORCH_PIN, torch_extras

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
    assert f"needs the [{extra}] extra" in done.stderr and f"[{extra}]'" in done.stderr and "pip install" in done.stderr
    assert (TORCH_PIN in done.stderr) == (extra in torch_extras()), done.stderr


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


def test_install_command_names_the_source_tree(monkeypatch, tmp_path):
    root = tmp_path / "my src"
    monkeypatch.setattr(launch, "source_tree", lambda: root)
    assert launch.install_command("train") == f"pip install {TORCH_PIN} -e '{root}[train]'"
    assert launch.install_command("serve") == f"pip install -e '{root}[serve]'"  # kserve: no torch to pin
    message = launch.missing_extra_message("alexnet-weights", "torch")
    assert message.startswith("Error: alexnet-weights needs the [train] extra (torch is not installed); pip install")
    assert "\n" not in message and "alexnet-deploy[" not in message


def test_install_command_without_a_source_tree(monkeypatch):
    monkeypatch.setattr(launch, "source_tree", lambda: None)  # a regular install: site-packages
    command = launch.install_command("export")
    assert command.startswith(f"pip install {TORCH_PIN} '.[export]' in the alexnet-deploy source tree")
    assert "python -m pip wheel --no-deps -w dist ." in command and "\n" not in command
    assert launch.install_command("ray").startswith("pip install '.[ray]'")


def test_source_tree_is_where_setup_cfg_is():
    root = launch.source_tree()
    assert root is None or (root / "setup.cfg").is_file() and (root / "runtime" / "launch.py").is_file()


def test_import_alexnet_without_torch_is_one_message():
    """The edge install (no torch): `import alexnet` names what is missing and how to install it,
    as one exception still named "torch" (so runtime.launch maps it to the [train] extra)."""
    code = (
        "import sys\nsys.modules['torch'] = None\ntry:\n    import alexnet\n"
        "except ModuleNotFoundError as exc:\n    print(exc.name, exc.__suppress_context__)\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, message = done.stdout.splitlines()
    assert first == "torch True"
    assert message.startswith("alexnet (training, evaluation, export) needs PyTorch, which is not installed: ")
    assert "pip install" in message and "[train]'" in message and "alexnet-deploy[" not in message
    raw = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; import alexnet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert raw.returncode == 1 and f"ModuleNotFoundError: {message}" in raw.stderr
    assert "During handling" not in raw.stderr and raw.stderr.count("Error:") == 1, raw.stderr


def test_commands_table_matches_setup_cfg():
    """Every console script but alexnet-run is a launcher of runtime.launch named in COMMANDS, and back."""
    import configparser
    from pathlib import Path

    setup_cfg = Path(__file__).resolve().parents[1] / "setup.cfg"
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = dict(line.replace(" ", "").split("=") for line in lines)
    launched = {script: target for script, target in scripts.items() if target.startswith("runtime.launch:")}
    assert set(launched) == set(COMMANDS) and set(scripts) - set(launched) == {"alexnet-run"}
    for script, target in launched.items():
        assert target == f"runtime.launch:{script.replace('-', '_')}" and callable(
            getattr(launch, target.split(":")[1])
        )


def test_torch_extras_are_read_from_the_package_metadata():
    # export-openvino pulls torch only through [export], litert through [export], all through [train]
    pulls = torch_extras()
    assert {"train", "export", "bench", "executorch", "export-openvino", "litert", "all"} <= pulls
    assert not pulls & {"serve", "openvino", "litert-runtime", "ray", "client", "coreml"}
