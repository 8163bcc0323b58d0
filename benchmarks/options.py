"""Parsing and checking of alexnet-bench's options (usage errors, exit 2), and the canonical
command a result file records. --batch-sizes is parsed by its click type (runtime.options)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from benchmarks.runners import BACKENDS
from benchmarks.variant import PRECISIONS
from runtime import formats
from runtime.backends import DEVICES as RUNTIME_DEVICES

if TYPE_CHECKING:
    from benchmarks.suite import Settings

# Short names, and every format's name (the format table's) for the backend that runs it: --backends onnx.
ALIASES = {
    "compile": "torch.compile",
    "ort": "onnxruntime",
    "ov": "openvino",
    "eager": "pytorch",
    "tflite": "litert",
    **{f.name: f.backend for f in formats.FORMATS.values() if f.backend and f.name != f.backend},
}
DEVICES = tuple(d for d in RUNTIME_DEVICES if d != "auto")  # "auto" expands to the devices present


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_backends(text: str) -> list[str]:
    if text == "all":
        return list(BACKENDS)
    return _known([ALIASES.get(name, name) for name in _split(text)], BACKENDS, "backend", text, "all")


def parse_devices(text: str) -> list[str]:
    if text == "auto":
        import torch

        from runtime.backends.torch_common import available_torch_devices

        found = available_torch_devices(torch)
        return [d for d in DEVICES if d in found]
    return _known(_split(text), DEVICES, "device", text, "auto")


def _known(names: list[str], allowed, kind: str, text: str, keyword: str) -> list[str]:
    """`names` without repeats, or a usage error naming the unknown ones and the choices."""
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        what = ", ".join(map(repr, unknown)) or repr(text)
        raise click.UsageError(f"unknown {kind} {what}; choose from {', '.join(allowed)} or {keyword}")
    return list(dict.fromkeys(names))


def parse_precisions(text: str) -> list[str]:
    if text == "all":
        return list(PRECISIONS)
    return _known(_split(text), PRECISIONS, "precision", text, "all")


def canonical_command(checkpoint: str | None, params: dict[str, Any]) -> str:
    """The whole command, every setting explicit, so that a result file says how to reproduce it."""
    parts = ["alexnet-bench"] + ([checkpoint] if checkpoint else [])
    for key, value in params.items():
        if value is not None and value is not False:
            parts += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return shlex.join(parts)


def command_line(
    checkpoint: str | None, settings: Settings, model_options: dict[str, Any], outputs: dict[str, str | None]
) -> str:
    """The run as one canonical command: every setting explicit, the model flags only without a checkpoint."""
    return canonical_command(
        checkpoint,
        dict(
            backends=",".join(settings.backends),
            precisions=",".join(settings.precisions or ()),
            devices=",".join(settings.devices),
            batch_sizes=",".join(map(str, settings.batch_sizes)),
            threads=settings.threads,
            warmup=settings.warmup,
            iterations=settings.budget.iterations,
            min_time=settings.budget.min_time,
            repeats=settings.budget.rounds,
            variant=None if checkpoint else model_options["variant"],
            num_classes=None if checkpoint else model_options["num_classes"],
            image_size=model_options["image_size"],
            clock=None if settings.clock == "wall" else settings.clock,
            quick=not settings.remeasure,
            **outputs,
        ),
    )


def timed_seconds(iterations: int | None, min_time: float | None) -> float | None:
    """--min-time as the run uses it: 2 s when neither budget flag is given; a usage error for both."""
    if iterations is not None and min_time is not None:
        raise click.UsageError("give --iterations or --min-time, not both")
    return 2.0 if iterations is None and min_time is None else min_time


def clock_threads(clock: str, threads: int | None, devices: list[str]) -> int | None:
    """--threads as the run uses it: the CPU clock counts one thread, so it takes one."""
    if clock != "cpu":
        return threads
    if threads not in (None, 1) or devices != ["cpu"]:
        raise click.UsageError(
            "--clock cpu measures one thread on the CPU: use it with --devices cpu (and --threads 1)"
        )
    return 1


def check_outputs(json_out: str | os.PathLike | None, markdown: str | None, plot: str | None) -> None:
    """Usage errors (exit 2) for outputs that could not be written; `-` is stdout for one text output."""
    from benchmarks.report import plot_format
    from runtime.outputs import OutputError, check_output_path, is_stdout

    if is_stdout(json_out) and is_stdout(markdown):
        raise click.UsageError("--json - and --markdown - would both go to stdout; send one of them to a file")
    try:
        for flag, path in (("--json", json_out), ("--markdown", markdown), ("--plot", plot)):
            if path:
                check_output_path(path, what=flag, stdout_ok=flag != "--plot")
        if plot:
            plot_format(plot)
    except (OutputError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def progress_line(enabled: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    """(say, close): one status line on stderr that each message replaces, with the time elapsed."""
    if not enabled:
        return (lambda _msg: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=None, file=sys.stderr, bar_format="{desc} [{elapsed}]", leave=False)

    def say(message: str) -> None:
        bar.set_description_str(message)
        bar.update()

    return say, bar.close
