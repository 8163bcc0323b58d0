"""alexnet-run: classify images with an exported artifact (or a checkpoint)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import click

from runtime.cliutil import echo_notice, handle_errors, set_torch_threads, stdout_errors
from runtime.formats import directory_suffixes, runnable_suffixes
from runtime.options import (
    backend_option,
    batch_size_option,
    command,
    device_option,
    exact_decode_option,
    image_size_option,
    json_flag_option,
    threads_option,
    topk_option,
    verify_option,
    workers_option,
)
from runtime.preprocess import IMAGE_SUFFIXES

DEMO_DIR = "demo-out"  # where the demo writes its artifacts
MODEL_ENV = "ALEXNET_MODEL"
# What the default model search picks up (the format table's): Core ML packages only where Core ML runs.
ARTIFACT_SUFFIXES = runnable_suffixes()
PROGRESS_MIN = 20  # show a progress bar from this many images on
# Control (ESC, CSI, newline), format (bidi overrides, zero-width) and separator characters:
# escaped in human output, since class names and file names come from untrusted files.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` for a terminal: every character in _UNPRINTABLE written as its escape (\\x1b, \\u202e)."""
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNPRINTABLE else c for c in str(text)
    )


class Triple(click.ParamType):
    """Three comma-separated finite floats, e.g. 0.485,0.456,0.406 (all positive when `positive`)."""

    name = "R,G,B"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, float, float]:
        if isinstance(value, tuple):
            return value
        try:
            parts = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
            self.fail(f"{value!r} is not three comma-separated finite numbers (R,G,B)", param, ctx)
        if self.positive and min(parts) <= 0:
            self.fail(f"{value!r}: every value must be positive", param, ctx)
        return parts  # type: ignore[return-value]


def default_model(cwd: Path | None = None) -> Path:
    """$ALEXNET_MODEL, else the newest artifact under ./demo-out/, else a usage error."""
    env = os.environ.get(MODEL_ENV)
    if env:
        if not Path(env).exists():
            raise click.UsageError(f"{MODEL_ENV}={env} does not exist; fix it or pass --model PATH")
        return Path(env)
    demo = (cwd or Path.cwd()) / DEMO_DIR
    found = []
    for root, dirs, files in os.walk(demo):
        # A .mlpackage is a directory: take it whole, never the files inside it.
        found += [Path(root, d) for d in dirs if d.endswith(ARTIFACT_SUFFIXES)]
        dirs[:] = [d for d in dirs if not d.endswith(directory_suffixes())]
        found += [Path(root, f) for f in files if f.endswith(ARTIFACT_SUFFIXES) and not f.startswith(".")]
    if not found:
        raise click.UsageError(
            f"no model: pass --model PATH, set {MODEL_ENV}, or put an artifact ({', '.join(ARTIFACT_SUFFIXES)}) "
            f"under {demo} (the demo writes one there; alexnet-export makes one from a checkpoint)"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def collect_images(inputs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Files as given; directories walked (sorted) for image files. Returns (images, skipped files).

    A FIFO, device or socket with an image suffix is listed like any file: load_image
    refuses it without reading (a per-file error), so nothing blocks on it.
    """
    images, skipped = [], []
    for arg in inputs:
        if not os.path.isdir(arg):
            images.append(arg)  # a missing or unreadable file is reported with the predictions
            continue
        for root, dirs, files in os.walk(arg):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                (images if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES else skipped).append(path)
    return images, skipped


def format_prediction(prediction: Any) -> str:
    lines = [printable(prediction.source)]
    for label, index, prob in zip(prediction.labels, prediction.indices, prediction.probabilities):
        lines.append(f"  {prob * 100:6.2f}%  {printable(label)} ({index})")
    return "\n".join(lines)


def _print_predictions(
    predictor: Any, images: list[str], topk: int, logits: bool, as_json: bool, batch_size: int | None = None
) -> list[Any]:
    """Print each image's result as it comes (a progress bar on stderr for long lists); return the failures."""
    from tqdm import tqdm

    failed = []
    with tqdm(
        total=len(images), unit="img", file=sys.stderr, disable=True if len(images) < PROGRESS_MIN else None
    ) as bar:
        predictions = predictor.iter_predict(images, topk, logits=logits, batch_size=batch_size)
        # closed on the way out (Ctrl-C too): the decoding threads stop before the command does
        with contextlib.closing(predictions):
            for prediction in predictions:
                if not prediction.ok:
                    failed.append(prediction)
                if as_json:
                    # Strict JSON (no NaN/Infinity); control characters are \u-escaped, so names read back verbatim.
                    text = json.dumps(prediction.to_dict(), allow_nan=False)
                else:
                    text = format_prediction(prediction) if prediction.ok else None
                if text is not None:
                    with stdout_errors():  # `> /dev/full`, a closed pipe: one line, not a traceback
                        if bar.disable:
                            click.echo(text)
                        else:
                            bar.write(text, file=sys.stdout)
                bar.update(1)
    return failed


@command()
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES_OR_DIRS...")
@click.option(
    "--model",
    "-m",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help=f"Artifact ({', '.join(runnable_suffixes(platform='any'))}) or checkpoint (.pth, .safetensors). "
    f"Default: ${MODEL_ENV}, else the newest artifact under ./{DEMO_DIR}/.",
)
@backend_option()
@device_option("auto: the fastest available (onnxruntime: CUDA > CoreML > OpenVINO > CPU); mps = Apple GPU.")
@topk_option()
@batch_size_option("Default: the artifact's fixed batch, else 32.")
@threads_option("For the backend.")
@workers_option()
@exact_decode_option()
@verify_option()
@json_flag_option("One JSON object per line per image.")
@click.option("--logits", is_flag=True, help="With --json: add every class's raw logit.")
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Class names, one per line (or a JSON list): for a model without alexnet-deploy metadata.",
)
@image_size_option("Overrides the crop size (foreign models).")
@click.option("--mean", type=Triple(), default=None, help="Override normalization mean, e.g. 0.485,0.456,0.406.")
@click.option(
    "--std", type=Triple(positive=True), default=None, help="Override normalization std, e.g. 0.229,0.224,0.225."
)
@click.option(
    "--server",
    metavar="URL",
    default=None,
    help="Ask an Open Inference Protocol server instead of a local model: http://HOST:PORT or grpc://HOST:PORT "
    "(alexnet-serve, Triton, KServe; needs the [client] extra).",
)
@click.option("--model-name", default="alexnet", show_default=True, help="With --server: the model's name there.")
@handle_errors
def main(
    inputs: tuple[str, ...],
    server: str | None,
    model_name: str,
    model: Path | None,
    backend: str,
    device: str,
    topk: int,
    batch_size: int | None,
    threads: int | None,
    workers: int | None,
    decode: str,
    verify: bool,
    as_json: bool,
    logits: bool,
    labels: str | None,
    image_size: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> None:
    """Classify images: the top-k classes of each, from an exported AlexNet.

    Class names, preprocessing and input size come from the artifact itself. Directories
    are walked for image files. Exit status: 0 when every image was predicted, 1 when
    some could not be (they are listed on stderr), 2 for usage errors.

    \b
    Examples:
      alexnet-run photo.jpg                          # newest model under ./demo-out/
      alexnet-run -m model.onnx --topk 3 photos/     # every image in a folder
      alexnet-run -m model.onnx --workers 4 --json camera/ > out.jsonl   # 4 decoding threads
      alexnet-run -m model.pt --device cuda --json a.png b.png > out.jsonl
      alexnet-run -m other.onnx --labels names.txt --image-size 224 x.jpg   # a foreign ONNX model
      alexnet-run --server http://127.0.0.1:8080 --model-name alexnet photo.jpg   # alexnet-serve or Triton
    """
    import runtime

    if logits and not as_json:
        raise click.UsageError("--logits only applies to --json output")
    overrides = {"labels": labels, "image_size": image_size, "mean": mean, "std": std}  # of the embedded metadata
    if server is not None:
        predictor = _remote_predictor(server, model_name, model, backend, device, threads, overrides)
    else:
        model = model or default_model()
        predictor = runtime.load(
            model,
            backend,
            device,
            threads=threads,
            batch_size=batch_size,
            verify=verify,
            workers=workers,
            decode=decode,
            **overrides,
        )
        set_torch_threads(threads)  # torch backends: process-wide, so here at the entry point, not in the library
        echo_notice(predictor, model)
    images = _images_to_predict(inputs)
    if not as_json:
        click.echo(predictor.describe() if server is not None else _describe(model, predictor), err=True)
    try:
        failed = _print_predictions(predictor, images, topk, logits, as_json, batch_size)
    except KeyboardInterrupt:
        # The rows printed so far are whole lines; the decoders have finished their images.
        with stdout_errors():
            sys.stdout.flush()
        click.echo("interrupted: the rows above are the images predicted before Ctrl-C", err=True)
        click.get_current_context().exit(130)
    finally:
        predictor.close()
    if failed:
        click.echo(f"{len(failed)} of {len(images)} images could not be predicted:", err=True)
        for prediction in failed:
            click.echo(f"  {printable(prediction.error)}", err=True)
        click.get_current_context().exit(1)


def _images_to_predict(inputs: tuple[str, ...]) -> list[str]:
    """The image files among `inputs` (directories walked); the files skipped are said on stderr."""
    images, skipped = collect_images(inputs)
    if skipped:
        click.echo(
            f"skipped {len(skipped)} file(s) without an image suffix: {printable(', '.join(skipped[:5]))}"
            f"{', ...' if len(skipped) > 5 else ''}",
            err=True,
        )
    if not images:
        raise click.UsageError(f"no image files found in {printable(', '.join(inputs))}")
    return images


def _remote_predictor(
    server: str, model_name: str, model: Path | None, backend: str, device: str, threads: int | None, overrides: dict
) -> Any:
    """A client of `server`; the local-model options make no sense with it (a usage error)."""
    from runtime.client import RemotePredictor, ServerError, parse_url

    try:
        parse_url(server)
    except ServerError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"--server {server!r}: "), param_hint="--server") from None

    local = {"--model": model, "--threads": threads, **{f"--{k.replace('_', '-')}": v for k, v in overrides.items()}}
    local.update(
        {"--backend": None if backend == "auto" else backend, "--device": None if device == "auto" else device}
    )
    given = [flag for flag, value in local.items() if value is not None]
    if given:
        raise click.UsageError(f"--server asks the server's model; {', '.join(given)} only apply to a local model")
    return RemotePredictor(server, model_name)


def _describe(model: Path, predictor: Any) -> str:
    """One line for stderr: which model runs where, on what input (human output only)."""
    m = predictor.metadata
    return (
        f"model: {model} ({predictor.backend_name} on {predictor.device}, {m.num_classes} classes, "
        f"input {'x'.join(map(str, m.input_shape[1:]))}, {m.precision})"
    )
