"""The format table (runtime/formats.py) is the one place formats are written down (issue 27):
alexnet-export --list-formats prints it, the README's table is its markdown, --format and the
suffix dispatch read it, and no other code lists formats, suffixes or precisions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from export.cli import main as export_main
from runtime import formats
from runtime.backends import coreml_backend_name, detect_backend

ROOT = Path(__file__).resolve().parent.parent
CODE = ("alexnet", "export", "runtime", "benchmarks")
# Literals that hold two or more format names, suffixes or precisions on purpose: registries keyed by
# other things that happen to share the names, or physics per precision (bf16 included).
NOT_FORMAT_LISTS = {
    ("runtime/integrity.py", frozenset(formats.names(benchmarked=True))): "DIGESTS: one hash function per format",
    (
        "runtime/backends/__init__.py",
        frozenset({"coreml", "litert", "openvino", "torchscript"}),
    ): "backend names -> classes",
    ("runtime/metadata.py", frozenset({"fp32", "fp16", "int8"})): "BYTES_PER_WEIGHT: bytes by precision",
    ("runtime/mlprogram/ops.py", frozenset({"fp32", "fp16", "int8"})): "MIL dtype names -> numpy",
    ("benchmarks/peak.py", frozenset({"fp32", "fp16", "int8"})): "operations per lane by precision",
    ("benchmarks/machine.py", frozenset({"onnx", "openvino"})): "package names whose versions are recorded",
    ("benchmarks/report.py", frozenset({"fp32", "int8"})): "the precisions with a 'fastest' table",
    ("benchmarks/variant.py", frozenset({"fp32", "fp16"})): "TORCH_DTYPES: torch dtypes by precision",
}


def run(*args: str):
    return CliRunner().invoke(export_main, list(args))


def test_list_formats_prints_every_format_with_its_extra_and_precisions():
    result = run("--list-formats")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for fmt in formats.FORMATS.values():
        [line] = [line for line in lines if line.split()[0] == fmt.name]
        assert ",".join(fmt.precisions) in line.split() and fmt.export_extra in line.split()
    assert len(lines) == 1 + len(formats.FORMATS)


def test_list_formats_as_json_is_the_table():
    result = run("--list-formats", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [f["name"] for f in listed] == list(formats.FORMATS)
    openvino = next(f for f in listed if f["name"] == "openvino")
    assert openvino["suffixes"] == [".xml"] and openvino["companions"] == [".bin"]
    assert openvino["precisions"] == ["fp32", "int8"] and openvino["runtime_extra"] == "openvino"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--json"], "--json goes with --list-formats"), ([], "Missing argument CHECKPOINT"), (["x.pth"], "--format")],
)
def test_usage_errors_without_a_format_or_checkpoint(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output


def test_format_choices_and_help_come_from_the_table():
    result = run("--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert "[" + "|".join((*formats.FORMATS, "all")) + "]" in flat


def test_the_readme_format_table_is_the_table():
    readme = (ROOT / "README.md").read_text()
    table = formats.markdown_table()
    assert table in readme, (
        "README's format table is out of date; paste the output of "
        "python -c 'from runtime.formats import markdown_table; print(markdown_table())'"
    )


def test_suffix_dispatch_follows_the_table(tmp_path):
    for fmt in formats.FORMATS.values():
        if fmt.backend is None or fmt.name == "torchscript":  # .pt: read by content (checkpoint or archive)
            continue
        path = tmp_path / f"model{fmt.suffix}"
        path.mkdir() if fmt.directory else path.write_bytes(b"x")
        expected = coreml_backend_name() if fmt.backend == "coreml" else fmt.backend
        assert detect_backend(path) == expected, fmt.name
    assert formats.for_suffix(".XML").name == "openvino" and formats.for_suffix(".bin") is None


def test_format_all_skips_a_format_whose_extra_is_missing(monkeypatch, tmp_path):
    from export import cli

    real = formats.Format.exportable
    monkeypatch.setattr(formats.Format, "exportable", lambda self: self.name != "openvino" and real(self))
    output = []
    monkeypatch.setattr(cli.click, "echo", lambda message="", **_: output.append(str(message)))
    assert "openvino" not in cli._exportable_formats()
    [line] = [line for line in output if "openvino" in line]
    assert line.startswith("skipping openvino: its export needs the [export-openvino] extra")


def test_no_other_code_lists_formats_suffixes_or_precisions():
    names = set(formats.FORMATS)
    suffixes = {s for f in formats.FORMATS.values() for s in (*f.suffixes, *f.companions) if s}
    vocabularies = {"formats": names, "suffixes": suffixes, "precisions": set(formats.PRECISIONS)}
    found = []
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "runtime/formats.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
                if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) or items is None:
                    continue
                strings = {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                for kind, vocabulary in vocabularies.items():
                    hit = frozenset(strings & vocabulary)
                    if len(hit) >= 2 and (relative, hit) not in NOT_FORMAT_LISTS:
                        found.append(f"{relative}:{node.lineno}: {kind} {sorted(hit)}")
    assert not found, "read these from runtime/formats.py instead:\n" + "\n".join(found)
