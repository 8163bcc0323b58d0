"""One definition of every command-line option that more than one command takes, and of the
command/group classes that give each command -h/--help and --version.

Each option is a function returning a click.option decorator: the type, bounds and base help are
written here once; a command may set only what must differ (its default, a note appended to the
help, where required, the Python name). Torch-free (click and the runtime only), so alexnet-run
on an edge install shares them; tests/test_cli_options.py checks that no command declares one of
these flags itself.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import click

from runtime.metadata import MAX_CLASSES
from runtime.option_types import BackendChoice, BatchSizes, DeviceChoice
from runtime.preprocess import MAX_CROP

PACKAGE = "alexnet-deploy"
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
MIN_IMAGE_SIZE = 8  # the smallest synthetic image; each AlexNet variant checks its own, larger minimum
SYNTHETIC_TRAIN_ENV = "ALEXNET_SYNTHETIC_TRAIN_PER_CLASS"
SYNTHETIC_VAL_ENV = "ALEXNET_SYNTHETIC_VAL_PER_CLASS"
DATA_SOURCES = "synthetic | DIR | cifar10:DIR | stl10:DIR"

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def package_version() -> str:
    """The installed distribution's version; "unknown" when run from a tree that was never installed."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{ctx.find_root().info_name} {package_version()}")
        ctx.exit()


def version_option() -> click.Option:
    """--version: prints "<prog> <version>" and exits, before any other option is checked."""
    return click.Option(
        ["--version"], is_flag=True, expose_value=False, is_eager=True, callback=_show_version, help="Show the version."
    )


class _Shared:
    """-h/--help, the help width and --version for every command, whatever its own settings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {**CONTEXT_SETTINGS, **(kwargs.get("context_settings") or {})}
        super().__init__(*args, **kwargs)
        self.params.append(version_option())  # type: ignore[attr-defined]


class Command(_Shared, click.Command):
    pass


class Group(_Shared, click.Group):
    """A group whose subcommands (`@group.command()`) and nested groups are ours too."""

    command_class = Command
    group_class = type  # nested groups: this class


def command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], Command]:
    """click.command with -h, --version and the shared help width."""
    return click.command(name, cls=Command, **attrs)


def group(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], Group]:
    """click.group with -h, --version and the shared help width, also for its subcommands."""
    return click.group(name, cls=Group, **attrs)


def _option(decls: Sequence[str], base: str, note: str = "", **attrs: Any) -> Decorator:
    return click.option(*decls, help=f"{base} {note}".strip(), **attrs)


def _default(default: Any) -> dict[str, Any]:
    return {"default": default, "show_default": default is not None}


# Model input and data.


def image_size_option(note: str = "", default: int | None = None) -> Decorator:
    """One bound for every command: 8 (the smallest synthetic image) to MAX_CROP. Each AlexNet
    variant needs more (27 px and up) and says so itself, naming its minimum (a usage error)."""
    return _option(
        ["--image-size"],
        "Square image side in pixels.",
        note,
        type=click.IntRange(MIN_IMAGE_SIZE, MAX_CROP),
        **_default(default),
    )


def data_option(note: str = "", default: str | None = None, required: bool = False) -> Decorator:
    return _option(["--data"], f"Data source: {DATA_SOURCES}.", note, required=required, **_default(default))


def split_option() -> Decorator:
    return _option(["--split"], "Which split of the data.", type=click.Choice(["val", "train"]), **_default("val"))


def seed_option(note: str = "", default: int = 0) -> Decorator:
    """A seed numpy's and torch's generators both take: 0 to 2**32-1."""
    return _option(["--seed"], "Random seed.", note, type=click.IntRange(0, 2**32 - 1), **_default(default))


def _synthetic_option(flag: str, images: str, envvar: str, note: str, default: int | None) -> Decorator:
    return _option(
        [flag],
        f"Synthetic {images} images per class.",
        note,
        type=click.IntRange(min=1),
        envvar=envvar,
        show_envvar=True,
        **_default(default),
    )


def synthetic_train_option(note: str = "", default: int | None = None) -> Decorator:
    return _synthetic_option("--synthetic-train-per-class", "training", SYNTHETIC_TRAIN_ENV, note, default)


def synthetic_val_option(note: str = "", default: int | None = None) -> Decorator:
    return _synthetic_option("--synthetic-val-per-class", "validation", SYNTHETIC_VAL_ENV, note, default)


def variant_option(variants: Sequence[str], note: str = "", default: str | None = None) -> Decorator:
    """`variants` is alexnet.model.VARIANTS, passed in: the runtime never imports the model code."""
    return _option(["--variant"], "AlexNet architecture.", note, type=click.Choice(list(variants)), **_default(default))


def augment_options(augmentations: Mapping[str, str], default_note: str) -> Decorator:
    """--augment NAME and --flip/--no-flip. `augmentations` (name -> what it does) is
    alexnet.augment.AUGMENTATIONS, passed in: the runtime never imports the training code."""
    names = "; ".join(f"{name}: {what}" for name, what in augmentations.items())
    augment = _option(
        ["--augment"], f"Training augmentation. {names}.", default_note, type=click.Choice(list(augmentations))
    )
    flip = click.option(
        "--flip/--no-flip", default=True, show_default=True, help="Random horizontal flips (off for digits, text)."
    )
    return lambda func: augment(flip(func))


def num_classes_option(note: str = "", default: int | None = None) -> Decorator:
    classes = click.IntRange(1, MAX_CLASSES)  # the bound artifacts' metadata and checkpoints' configs enforce
    return _option(["--num-classes"], "Output classes.", note, type=classes, **_default(default))


def max_images_option(note: str = "", default: int = 1000) -> Decorator:
    return _option(
        ["--max-images"],
        "At most this many images of the split, evenly spread.",
        note,
        type=click.IntRange(min=1),
        **_default(default),
    )


def count_option(note: str = "") -> Decorator:
    return _option(["--n", "count"], "Images shown.", note, type=click.IntRange(1, 256), **_default(32))


def files_count_option(default: int, note: str = "") -> Decorator:
    """--count N: how many image files a benchmark helper writes."""
    return _option(["--count"], "Image files to write.", note, type=click.IntRange(min=1), **_default(default))


# Running a model.


def backend_option(note: str = "") -> Decorator:
    return _option(
        ["--backend"], "Engine; auto picks it from the model file.", note, type=BackendChoice(), **_default("auto")
    )


def device_option(note: str = "", indexed: bool = False, default: str = "auto") -> Decorator:
    """`indexed`: also cuda:N (alexnet-train's torch device)."""
    base = "Where the model runs (or cuda:N)." if indexed else "Where the model runs."
    return _option(["--device"], base, note, type=DeviceChoice(indexed), **_default(default))


def batch_size_option(note: str = "", default: int | None = None) -> Decorator:
    return _option(["--batch-size"], "Images per batch.", note, type=click.IntRange(min=1), **_default(default))


def batch_sizes_option(note: str = "", default: str = "1,8,32") -> Decorator:
    return _option(["--batch-sizes"], "Comma-separated batch sizes.", note, type=BatchSizes(), **_default(default))


def topk_option(note: str = "") -> Decorator:
    return _option(["--topk"], "Classes kept per image.", note, type=click.IntRange(min=1), **_default(5))


def threads_option(note: str = "") -> Decorator:
    return _option(["--threads"], "Intra-op CPU threads.", note, type=click.IntRange(min=1), default=None)


def workers_option(note: str = "") -> Decorator:
    """--workers N: threads decoding images while the model runs (runtime.pipeline; None: its default)."""
    return _option(
        ["--workers"],
        "Threads decoding and preprocessing images while the model runs the previous batch (0: none, "
        "one image after another). Default: one per core, at most 8.",
        note,
        type=click.IntRange(min=0),
        default=None,
    )


def loader_workers_option(note: str = "", default: int = 0) -> Decorator:
    """--workers N for training: torch DataLoader worker processes (augmentation runs in Python)."""
    return _option(["--workers"], "DataLoader worker processes.", note, type=click.IntRange(min=0), **_default(default))


def exact_decode_option() -> Decorator:
    """--exact-decode: PreprocessSpec.decode = "exact" (the flag's value is the decode mode)."""
    return click.option(
        "--exact-decode",
        "decode",
        flag_value="exact",
        default="reduced",
        show_default=False,
        help="Decode every pixel of every image and resize it whole: torchvision's preprocessing, bit for bit. "
        "By default a large JPEG is decoded at 1/2, 1/4 or 1/8 of its size, still at least twice the resize "
        "target, and only the crop is resized (the same top-1 and probabilities within a point on the README's "
        "photographs; ~4x faster on 12-megapixel photos).",
    )


def verify_option() -> Decorator:
    """--verify/--no-verify: runtime.load's `verify` (the weights against the SHA-256 recorded at export)."""
    return click.option(
        "--verify/--no-verify",
        default=True,
        show_default=True,
        help="Check the model's weights against the SHA-256 its export recorded (a damaged or changed copy is "
        "refused); --no-verify skips the extra read, for trusted read-only storage.",
    )


def max_batch_delay_option(name: str = "max_batch_delay_ms", note: str = "") -> Decorator:
    return _option(
        ["--max-batch-delay-ms", name],
        "How long the first request of a batch waits for others (0: no batching across requests).",
        note,
        type=click.FloatRange(0, 10_000),
        **_default(5.0),
    )


# Outputs.


def output_option(
    help: str,
    kind: Literal["file", "dir", "any"] = "any",
    required: bool = False,
    default: Path | None = None,
    name: str = "output",
) -> Decorator:
    """-o/--output: a file, a folder or either (`kind`), as a Path."""
    path = click.Path(file_okay=kind != "dir", dir_okay=kind != "file", path_type=Path)
    return click.option("-o", "--output", name, type=path, required=required, help=help, **_default(default))


def out_dir_option(help: str, default: str | None = None, required: bool = False, name: str = "out") -> Decorator:
    """--out: the folder a command writes into, as a Path."""
    path = click.Path(file_okay=False, path_type=Path)
    return click.option("--out", name, type=path, required=required, help=help, **_default(default))


def json_flag_option(help: str) -> Decorator:
    """--json as a switch: the command prints JSON instead of text (its value is `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def json_file_option(name: str = "json_path", note: str = "") -> Decorator:
    """--json FILE: every number written as JSON, `-` for stdout."""
    base = "Write every number as JSON (- for stdout; the human-readable output then goes to stderr)."
    return _option(["--json", name], base, note, type=click.Path(dir_okay=False, path_type=Path), default=None)


def quiet_option() -> Decorator:
    return click.option("--quiet", is_flag=True, help="No progress lines on stderr.")


# Benchmarks: alexnet-bench and alexnet-report time the same way.


def devices_option() -> Decorator:
    return _option(["--devices"], "Comma-separated: cpu, cuda, mps, or auto (every one present).", **_default("auto"))


def precisions_option(help: str, default: str | None = None) -> Decorator:
    return click.option("--precisions", help=help, **_default(default))


def calibration_option() -> Decorator:
    return click.option(
        "--calibration",
        default=None,
        help="int8: calibration images (a folder, ImageFolder, synthetic, cifar10:DIR, stl10:DIR; labels unused, "
        "other classes are fine). Default: the checkpoint's training data.",
    )


def warmup_option() -> Decorator:
    return _option(["--warmup"], "Untimed calls per row before timing.", type=click.IntRange(min=0), **_default(3))


def repeats_option(note: str = "") -> Decorator:
    return _option(["--repeats"], "Timing rounds.", note, type=click.IntRange(min=1), **_default(3))


def min_time_option(note: str = "", default: float | None = None) -> Decorator:
    positive = click.FloatRange(min=0, min_open=True)
    return _option(["--min-time"], "Seconds timed per row, over all rounds.", note, type=positive, **_default(default))


def duration_option(note: str = "", default: float = 60) -> Decorator:
    """Seconds of load a server benchmark measures (benchmarks.serve_load, benchmarks.serve_hostile)."""
    return _option(["--duration"], "Seconds measured.", note, type=click.FloatRange(1, 3600), **_default(default))


def quick_option() -> Decorator:
    return click.option(
        "--quick",
        is_flag=True,
        help="Measure the machine's limits once and briefly (a first look: the floor is rougher).",
    )
