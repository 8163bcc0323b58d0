"""Every command answers -h and --version; shared options are declared once (runtime/options.py)."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runtime import options
from runtime.launch import COMMANDS
from runtime.preprocess import MAX_CROP

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("alexnet", "export", "runtime", "benchmarks")
OPTIONS_FILE = "runtime/options.py"
# Console scripts (runtime.launch, plus alexnet-run) and the commands run with python -m.
SCRIPTS = {script: module for script, (module, _extra) in COMMANDS.items()} | {"alexnet-run": "runtime.cli"}
MODULES = {
    "runtime.agree": "runtime.agree",
    "benchmarks.serve_load": "benchmarks.serve_load",
    "benchmarks.serve_hostile": "benchmarks.serve_hostile",
    "benchmarks.format_agreement": "benchmarks.format_agreement",
    "benchmarks.decode_quality": "benchmarks.decode_quality",
}
# Flags that every command takes from runtime.options, never declares itself.
SHARED_FLAGS = (
    "--image-size",
    "--seed",
    "--threads",
    "--batch-size",
    "--batch-sizes",
    "--device",
    "--devices",
    "--workers",
    "--json",
    "--quiet",
    "--output",
    "--out",
    "--data",
    "--backend",
    "--variant",
    "--num-classes",
    "--split",
    "--synthetic-train-per-class",
    "--synthetic-val-per-class",
    "--max-images",
    "--n",
    "--max-batch-delay-ms",
    "--precisions",
    "--calibration",
    "--warmup",
    "--repeats",
    "--min-time",
    "--quick",
    "--verify/--no-verify",
    "--topk",
    "--version",
)
# (flag, file): a local option of the same name that means something else there.
LOCAL_ON_PURPOSE = {
    ("--image-size", "benchmarks/serve_load.py"): "the side of the JPEGs sent to the server, not a model input",
    ("--warmup", "benchmarks/serve_load.py"): "seconds of load before measuring, not untimed calls",
    ("--data", "export/cli.py"): "a folder of validation images, not a data source",
    ("--images", "runtime/agree.py"): "image files or folders to compare on",
    ("--images", "benchmarks/coreml_reference.py"): "how many random images per package",
    ("--resume", "runtime/batch/cli.py"): "a switch (finish the run in --output), not a checkpoint to continue from",
    ("--format", "runtime/batch/cli.py"): "the results' file format (parquet, jsonl), not an export format",
}


def _command(module_name: str) -> click.Command:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an extra missing from this install (e.g. kserve)
        pytest.skip(f"{module_name}: {exc}")
    return module.main


def _commands() -> list[tuple[str, str, list[str]]]:
    """(prog, module, subcommand path) for every command and every subcommand of a group."""
    found = []
    for prog, module in {**SCRIPTS, **MODULES}.items():
        found.append((prog, module, []))
        if module == "alexnet.cli.data":
            found += [(prog, module, [name]) for name in ("synthetic", "inspect")]
        if module == "alexnet.cli.viz":
            names = ("architecture", "filters", "features", "embeddings", "predictions", "batch")
            found += [(prog, module, [name]) for name in names]
    return found


# kserve and tritonclient.grpc register the same protobuf symbols, which one process cannot hold
# twice (runtime/server): the server's command answers in a process of its own.
OWN_PROCESS = {"runtime.server.cli"}


def _invoke(prog: str, module: str, args: list[str]) -> tuple[int, str]:
    if module not in OWN_PROCESS:
        result = CliRunner().invoke(_command(module), args, prog_name=prog)
        return result.exit_code, result.output
    if importlib.util.find_spec("kserve") is None:  # find_spec: importing it here is what must not happen
        pytest.skip(f"{module}: kserve is not installed")
    code = f"from {module} import main; main({args!r}, prog_name={prog!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("prog, module, sub", _commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_help_and_version(prog, module, sub):
    for flag in ("-h", "--help"):
        code, output = _invoke(prog, module, [*sub, flag])
        assert code == 0, output
        assert output.startswith(f"Usage: {' '.join([prog, *sub])} ") and "--version" in output
    code, output = _invoke(prog, module, [*sub, "--version"])
    assert code == 0 and output == f"{prog} {options.package_version()}\n", output


def test_every_group_subcommand_is_listed():
    """_commands names each subcommand by hand: a new one must be added there."""
    for module, listed in (("alexnet.cli.data", 2), ("alexnet.cli.viz", 6)):
        assert len(_command(module).commands) == listed, module


def test_version_falls_back_to_unknown(monkeypatch):
    def missing(_name):
        raise importlib.metadata.PackageNotFoundError(_name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert options.package_version() == "unknown"


DECLARING = ("option", "Option", "_option", "_synthetic_option")  # click.option, click.Option, runtime.options


def _source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _declared_flags(path: Path) -> list[str]:
    """The flags of every click.option(...) / click.Option([...]) call (and options._option) in `path`."""
    flags = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = getattr(node, "func", None)
        if isinstance(node, ast.Call) and getattr(name, "attr", getattr(name, "id", None)) in DECLARING:
            for arg in node.args:
                items = arg.elts if isinstance(arg, (ast.List, ast.Tuple)) else [arg]
                flags += [i.value for i in items if isinstance(i, ast.Constant) and str(i.value).startswith("-")]
    return flags


def _declarations() -> dict[str, list[str]]:
    """flag -> the files declaring it (once per declaration)."""
    found: dict[str, list[str]] = {}
    for path in _source_files():
        for flag in _declared_flags(path):
            found.setdefault(flag, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_shared_flags_are_declared_only_in_runtime_options():
    declared = _declarations()
    for flag in SHARED_FLAGS:
        assert OPTIONS_FILE in declared.get(flag, []), f"{flag} is not defined in {OPTIONS_FILE}"
        elsewhere = [f for f in declared[flag] if f != OPTIONS_FILE and (flag, f) not in LOCAL_ON_PURPOSE]
        assert not elsewhere, f"{flag} declared in {elsewhere}: use runtime.options instead"


def test_no_other_flag_is_declared_twice():
    """A flag that two commands declare belongs in runtime/options.py (or LOCAL_ON_PURPOSE, with why)."""
    for flag, files in _declarations().items():
        local = [f for f in files if f != OPTIONS_FILE and (flag, f) not in LOCAL_ON_PURPOSE]
        assert len(local) < 2, f"{flag} declared in {local}: define it once in {OPTIONS_FILE}"


def test_commands_come_from_runtime_options():
    """click.command/click.group give no -h or --version: every command uses options.command/group."""
    for path in _source_files():
        if path.relative_to(ROOT).as_posix() == OPTIONS_FILE:
            continue
        text = path.read_text()
        assert "click.command(" not in text and "click.group(" not in text, path


def test_options_module_is_torch_free():
    code = "import sys, runtime.options; print(sorted({'torch', 'alexnet', 'export', 'benchmarks'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# The types and bounds, through a throwaway command.


@click.command()
@options.batch_sizes_option()
@options.image_size_option()
@options.seed_option()
@options.device_option()
def probe(batch_sizes, image_size, seed, device):
    click.echo(repr((batch_sizes, image_size, seed, device)))


@click.command()
@options.device_option(indexed=True)
def torch_probe(device):
    click.echo(device)


def invoke(command: click.Command, *args: str):
    return CliRunner().invoke(command, list(args))


@pytest.mark.parametrize(
    "value, parsed", [("1,8,32", (1, 8, 32)), ("32, 1,8,1", (1, 8, 32)), ("4", (4,)), ("2,", (2,))]
)
def test_batch_sizes_parse(value, parsed):
    result = invoke(probe, "--batch-sizes", value)
    assert result.exit_code == 0 and result.output.startswith(f"({parsed!r}, "), result.output


def test_batch_sizes_default_is_parsed():
    assert invoke(probe).output == repr(((1, 8, 32), None, 0, "auto")) + "\n"


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "give at least one batch size"),
        (",", "give at least one batch size"),
        ("0", "batch sizes must be at least 1"),
        ("8,-1", "batch sizes must be at least 1"),
        ("1,x", "comma-separated integers"),
        ("1.5", "comma-separated integers"),
    ],
)
def test_bad_batch_sizes_are_usage_errors(value, message):
    result = invoke(probe, "--batch-sizes", value)
    assert result.exit_code == 2 and message in result.output and "--batch-sizes" in result.output, result.output


@pytest.mark.parametrize(
    "args",
    [
        ("--image-size", "7"),
        ("--image-size", str(MAX_CROP + 1)),
        ("--seed", "-1"),
        ("--seed", str(2**32)),
        ("--device", "cuda:0"),
        ("--device", "tpu"),
    ],
)
def test_bounds_are_usage_errors(args):
    assert invoke(probe, *args).exit_code == 2


def test_bounds_edges_are_accepted():
    result = invoke(probe, "--image-size", str(options.MIN_IMAGE_SIZE), "--seed", str(2**32 - 1))
    assert result.exit_code == 0 and f"{options.MIN_IMAGE_SIZE}, {2**32 - 1}" in result.output
    assert invoke(probe, "--image-size", str(MAX_CROP)).exit_code == 0


def test_indexed_device_takes_cuda_n():
    assert invoke(torch_probe, "--device", "cuda:1").output == "cuda:1\n"
    assert invoke(torch_probe, "--device", "cuda:x").exit_code == 2
    assert invoke(torch_probe, "--device", "cpu").output == "cpu\n"


def test_embeddings_still_need_two_images(tmp_path):
    """--max-images is shared (at least 1); a 2-D projection checks its own minimum, as a usage error."""
    model = tmp_path / "model.pth"
    model.write_bytes(b"")  # never read: the check comes first
    args = ["embeddings", str(model), "--data", "synthetic", "--max-images", "1", "-o", str(tmp_path / "e.png")]
    result = CliRunner().invoke(_command("alexnet.cli.viz"), args)
    assert result.exit_code == 2 and "at least 2 images" in result.output, result.output
