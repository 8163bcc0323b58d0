"""The deployment formats: one typed table, the only place their facts are written down.

Everything that names a format reads it from here: `alexnet-export --format` (choices, help,
`--list-formats`, `--format all`), `runtime.load`'s suffix dispatch, the default model search of
alexnet-run, alexnet-bench's and alexnet-report's rows, and the README's format table
(`markdown_table()` writes it; a test keeps the README in step).

It lives in `runtime/` (torch-free) because the runtime dispatches on it; `export/` adds one
exporter file per format and `runtime/backends/` one backend file. Adding a format = one entry
here + those two files + tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Weights/compute precisions, in the order they are offered (bf16: a benchmark-only precision of torch eager).
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Format:
    name: str  # what --format takes
    title: str  # how people write it
    suffixes: tuple[str, ...]  # the first is what export writes; the rest are also read (.mlmodel)
    precisions: tuple[str, ...]  # what export offers, default first
    backend: str | None  # the runtime backend that runs it (None: served by another program)
    export_extra: str  # `pip install '.[EXTRA]'` to export it
    runtime_extra: str  # ... and to run it ("" = the base install)
    export_modules: tuple[str, ...]  # modules export imports (--format all skips a format missing one)
    metadata: str  # where the alexnet-deploy metadata lives in the artifact
    devices: tuple[str, ...]  # the --device values its backend runs on
    targets: str  # where it is deployed, in words
    companions: tuple[str, ...] = ()  # files beside the artifact that belong to it (an IR's .bin)
    directory: bool = False  # the artifact (its first suffix) is a folder: a .mlpackage, a model repository
    in_all: bool = True  # part of --format all (a Triton repository is written on its own)
    gated_int8: bool = False  # int8 is calibrated and must pass the accuracy gate (export/gate.py)
    predicts_on: tuple[str, ...] = ()  # sys.platform values where its own engine predicts (empty: anywhere)
    # Batch limits of the engine: a dynamic batch of at most `max_batch` images per call (None: any);
    # `fixed_batch`: the batch is part of the file (export's default 1), the runtime pads to it.
    max_batch: int | None = None
    fixed_batch: bool = False
    # Exported through torch.export (export/torch_export.py), int8 by a PT2E quantizer (export/pt2e_int8.py).
    torch_export: bool = False
    notes: str = ""

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def default_precision(self) -> str:
        return self.precisions[0]

    @property
    def benchmarked(self) -> bool:
        """alexnet-bench and alexnet-report time it (a model repository is timed through its server)."""
        return self.backend is not None

    def exportable(self) -> bool:
        """Whether every module its exporter imports is installed here."""
        return all(importlib.util.find_spec(m) is not None for m in self.export_modules)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "default_precision": self.default_precision}


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            name="torchscript",
            title="TorchScript",
            suffixes=(".pt",),
            precisions=("fp32", "fp16"),
            backend="torchscript",
            export_extra="export",
            runtime_extra="train",
            export_modules=("torch",),
            metadata='_extra_files["alexnet_deploy.json"]',
            devices=("cpu", "cuda", "mps"),
            targets="servers and desktops with libtorch (C++ or Python)",
            notes="traced in eval mode",
        ),
        Format(
            name="onnx",
            title="ONNX",
            suffixes=(".onnx",),
            precisions=("fp32", "fp16", "int8"),
            backend="onnxruntime",
            export_extra="export",
            runtime_extra="",
            export_modules=("torch", "onnx", "onnxscript", "onnxruntime"),
            metadata='metadata_props["alexnet_deploy"]',
            devices=("cpu", "cuda", "mps"),
            targets="any CPU or GPU with ONNX Runtime (the base install)",
            gated_int8=True,
            notes="int8: static QDQ, calibrated",
        ),
        Format(
            name="openvino",
            title="OpenVINO IR",
            suffixes=(".xml",),
            companions=(".bin",),
            precisions=("fp32", "int8"),
            backend="openvino",
            export_extra="export-openvino",
            runtime_extra="openvino",
            export_modules=("torch", "onnx", "onnxscript", "openvino", "nncf"),
            metadata='rt_info["alexnet_deploy"]',
            devices=("cpu",),
            targets="x86 servers and edge boxes (Intel, AMD), ARM CPUs",
            gated_int8=True,
            notes="from the ONNX export, fp32 weights kept fp32; int8: NNCF, calibrated",
        ),
        Format(
            name="coreml",
            title="Core ML",
            suffixes=(".mlpackage", ".mlmodel"),
            directory=True,
            precisions=("fp16", "fp32", "int8"),
            backend="coreml",
            export_extra="export",
            runtime_extra="coreml",
            export_modules=("torch", "coremltools"),
            metadata='user_defined_metadata["alexnet_deploy"]',
            devices=("cpu", "mps"),
            targets="iPhone, iPad, Mac (Neural Engine, GPU, CPU)",
            predicts_on=("darwin",),
            notes="ML Program; int8: weight compression, gated; off macOS the reference evaluator runs it",
        ),
        Format(
            name="executorch",
            title="ExecuTorch",
            suffixes=(".pte",),
            precisions=("fp32", "int8"),
            backend="executorch",
            export_extra="executorch",
            runtime_extra="executorch",
            export_modules=("torch", "executorch"),
            metadata='constant method "alexnet_deploy_metadata"',
            devices=("cpu",),
            targets="Android, iOS and embedded Linux apps (the ExecuTorch runtime, XNNPACK on ARM/x86 CPUs)",
            gated_int8=True,
            # ExecuTorch's memory planning takes a dynamic batch up to 15 images per call (measured
            # with executorch 1.4.1: 16 fails in set_inputs whatever bound torch.export was given).
            max_batch=15,
            torch_export=True,
            notes="torch.export -> XNNPACK delegate; int8: PT2E (XNNPACKQuantizer), calibrated; its Python runtime links libtorch",
        ),
        Format(
            name="litert",
            title="LiteRT",
            suffixes=(".tflite",),
            precisions=("fp32", "int8"),
            backend="litert",
            export_extra="litert",
            runtime_extra="litert-runtime",
            export_modules=("torch", "litert_torch", "ai_edge_litert"),
            metadata='Model.metadata["alexnet_deploy"]',
            devices=("cpu",),
            targets="Android apps, Raspberry Pi and other ARM boards (the LiteRT, formerly TensorFlow Lite, interpreter)",
            gated_int8=True,
            # The converter folds the batch into its reshapes: a file runs at the batch it was exported with.
            fixed_batch=True,
            torch_export=True,
            notes="litert-torch; int8: PT2E full-integer (int8 input/output), calibrated",
        ),
        Format(
            name="triton",
            title="Triton repository",
            suffixes=("",),
            directory=True,
            in_all=False,
            precisions=("fp32", "fp16", "int8"),
            backend=None,
            export_extra="export",
            runtime_extra="client",
            export_modules=("torch", "onnx", "onnxscript", "tritonclient"),
            metadata="config.pbtxt, labels.txt and the ONNX model's metadata_props",
            devices=("cpu", "cuda"),
            targets="Triton Inference Server (alexnet-run --server talks to it)",
            gated_int8=True,
            notes="REPO/NAME/{config.pbtxt, 1/model.onnx, labels.txt}",
        ),
    )
}


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}") from None


def names(*, in_all: bool | None = None, benchmarked: bool | None = None) -> tuple[str, ...]:
    """Format names in table order, optionally only those in --format all / those timed."""
    return tuple(
        f.name
        for f in FORMATS.values()
        if (in_all is None or f.in_all == in_all) and (benchmarked is None or f.benchmarked == benchmarked)
    )


def for_suffix(suffix: str) -> Format | None:
    """The format whose artifacts end in `suffix` (any case), or None."""
    suffix = suffix.lower()
    return next((f for f in FORMATS.values() if suffix and suffix in f.suffixes), None)


def for_backend(backend: str) -> Format | None:
    return next((f for f in FORMATS.values() if f.backend == backend), None)


def runnable_suffixes(platform: str = sys.platform) -> tuple[str, ...]:
    """Suffixes of artifacts the runtime runs on `platform` (a sys.platform, or "any": every one)
    with the format's own engine (alexnet-run's model search)."""
    return tuple(
        s
        for f in FORMATS.values()
        if f.backend and (platform == "any" or not f.predicts_on or platform in f.predicts_on)
        for s in f.suffixes
    )


def directory_suffixes() -> tuple[str, ...]:
    """Suffixes of artifacts that are folders (a .mlpackage): a model search takes them whole."""
    return tuple(f.suffix for f in FORMATS.values() if f.directory and f.suffix)


def artifact_bytes(path: str | os.PathLike | None) -> int | None:
    """Bytes on disk of an artifact: a folder (.mlpackage) whole, a file with its companions (an IR's
    .bin); None when there is none."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    fmt = for_suffix(path.suffix)
    beside = [path.with_suffix(s) for s in (fmt.companions if fmt else ())]
    return path.stat().st_size + sum(p.stat().st_size for p in beside if p.is_file())


def install_hint(extra: str) -> str:
    return f"pip install '.[{extra}]' (from the alexnet-deploy source tree)" if extra else "the base install"


def rows() -> list[tuple[str, ...]]:
    """--list-formats: one row per format."""
    header = ("format", "suffix", "precisions", "runtime backend", "export extra", "runtime extra", "metadata in")
    body = [
        (
            f.name,
            "/".join(s + (" (dir)" if f.directory and s == f.suffix else "") for s in f.suffixes if s) or "folder",
            ",".join(f.precisions),
            f.backend or "-",
            f.export_extra,
            f.runtime_extra or "(base)",
            f.metadata,
        )
        for f in FORMATS.values()
    ]
    return [header, *body]


def text_table() -> str:
    table = rows()
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)


def markdown_table() -> str:
    """The README's format table."""
    header = "| format | artifact | precisions (default first) | runs on | extras: export / runtime | metadata | for |"
    lines = [header, "|" + "---|" * 7]
    for f in FORMATS.values():
        artifact = " / ".join(f"`{s}`" for s in (*f.suffixes, *f.companions) if s) or "a folder"
        backend = f"`{f.backend}` backend" if f.backend else "its server"
        extras = f"`[{f.export_extra}]` / " + (f"`[{f.runtime_extra}]`" if f.runtime_extra else "base")
        lines.append(
            f"| `{f.name}` ({f.title}) | {artifact} | {', '.join(f.precisions)} | {backend} | {extras} "
            f"| `{f.metadata}` | {f.targets} |"
        )
    return "\n".join(lines)


def to_json() -> str:
    return json.dumps([f.to_dict() for f in FORMATS.values()], indent=2)
