"""Console-script launchers: every command but `alexnet-run` needs an optional extra.

The base install (`pip install .` in the source tree) is the torch-free runtime. Each other command's
module imports torch (or onnx, matplotlib, openvino) at import time, which on an edge install
would end in an ImportError traceback before any of our code runs. These launchers import the
command lazily and turn a missing third-party package into one line naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

# Our own top-level packages: an ImportError naming one of these is a bug, never a missing extra.
OWN_PACKAGES = frozenset({"alexnet", "export", "runtime", "benchmarks"})

# script -> (module with a click `main`, the extra that installs what it needs)
COMMANDS = {
    "alexnet-info": ("alexnet.cli.info", "train"),
    "alexnet-data": ("alexnet.cli.data", "train"),
    "alexnet-train": ("alexnet.cli.train", "train"),
    "alexnet-eval": ("alexnet.cli.eval", "train"),
    "alexnet-export": ("export.cli", "export"),
    "alexnet-bench": ("benchmarks.cli", "bench"),
    "alexnet-report": ("benchmarks.report_cli", "bench"),
    "alexnet-viz": ("alexnet.cli.viz", "train"),
    "alexnet-serve": ("runtime.server.cli", "serve"),
    "alexnet-batch": ("runtime.batch.cli", "ray"),
    "alexnet-weights": ("alexnet.cli.weights", "train"),
}
# The torch to install first where an extra pulls torch (the README's and Makefile's): a plain
# `torch` from the registry is a CUDA build of several GB.
TORCH_PIN = "torch==2.13.0"
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?.*\bextra\s*==\s*\"([^\"]+)\"")


def torch_extras() -> frozenset[str]:
    """The extras that install torch, directly or through another extra: read from the installed
    package's metadata (setup.cfg's extras_require), so the table is written once."""
    try:
        requirements = importlib.metadata.requires("alexnet-deploy") or []
    except importlib.metadata.PackageNotFoundError:
        return frozenset()
    direct, includes = set(), {}
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, inner, extra = match.groups()
        if name.lower() == "torch":
            direct.add(extra)
        elif name.lower() == "alexnet-deploy":
            includes.setdefault(extra, set()).update(e.strip() for e in (inner or "").split(","))
    pulls = set(direct)
    while grown := {extra for extra, inner in includes.items() if inner & pulls} - pulls:
        pulls |= grown
    return frozenset(pulls)


def source_tree() -> Path | None:
    """The alexnet-deploy source tree this code runs from (an editable install, or a checkout), or None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "setup.cfg").is_file() else None


def install_command(extra: str) -> str:
    """How to install `extra`: there is no registry package, only the source tree (a command, one line)."""
    torch = f"{TORCH_PIN} " if extra in torch_extras() else ""
    root = source_tree()
    if root is not None:
        return f"pip install {torch}-e {shlex.quote(f'{root}[{extra}]')}"
    return (
        f"pip install {torch}'.[{extra}]' in the alexnet-deploy source tree (or '<wheel>[{extra}]', "
        "a wheel built there with `python -m pip wheel --no-deps -w dist .`)"
    )


def missing_extra_message(script: str, missing: str) -> str:
    extra = COMMANDS[script][1]
    return f"Error: {script} needs the [{extra}] extra ({missing} is not installed); {install_command(extra)}"


def launch(script: str) -> None:
    """Import `script`'s command and run it, or exit 1 with the extra to install."""
    module_name, _ = COMMANDS[script]
    # The entry point may set process state: the LiteRT converter's C++ INFO lines (absl, "Estimated
    # count of arithmetic ops") are not the user's. A value the user set wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if not top or top in OWN_PACKAGES:
            raise
        sys.exit(missing_extra_message(script, top))  # SystemExit with a message: stderr, status 1
    module.main(prog_name=script)


def _launcher(script: str) -> Callable[[], None]:
    def main() -> None:
        launch(script)

    main.__name__ = script.replace("-", "_")
    main.__doc__ = f"Run {script} (see `{script} --help`)."
    return main


alexnet_info = _launcher("alexnet-info")
alexnet_data = _launcher("alexnet-data")
alexnet_train = _launcher("alexnet-train")
alexnet_eval = _launcher("alexnet-eval")
alexnet_export = _launcher("alexnet-export")
alexnet_bench = _launcher("alexnet-bench")
alexnet_report = _launcher("alexnet-report")
alexnet_viz = _launcher("alexnet-viz")
alexnet_serve = _launcher("alexnet-serve")
alexnet_batch = _launcher("alexnet-batch")
alexnet_weights = _launcher("alexnet-weights")
