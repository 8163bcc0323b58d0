"""Reduced against exact decoding: how far the model's input and output move, and what it saves (issue 29).

    python -m benchmarks.decode_quality compare tv1000.pth --json decode-quality.json
    python -m benchmarks.decode_quality write-photos photos/ --count 48   # photos/4032x3024/, photos/500x375/

Photos: square-ish crops of the two photographs scikit-learn ships (china.jpg, flower.jpg), 4:3,
landscape and portrait, upscaled (bicubic) to each size with a little sensor-like noise (sigma 3,
so the upscaled pixels are not smoother than a camera's) and saved as JPEG quality 90. For each
size and each bound (the shorter side a reduced decode keeps, in multiples of the resize target:
runtime.reduced_decode.REDUCE_BOUND), every photo is preprocessed reduced and exact, and the
checkpoint's predictions compared: top-1 agreement, max |delta p| (probability points of any
class), max |delta x| of the input in 8-bit levels, and the milliseconds per photo of each
preprocessing (one thread, after a warm-up; the best of 3 passes).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from runtime.options import files_count_option, group, json_file_option

SIZES = ((500, 375), (1024, 768), (2016, 1512), (4032, 3024))
BOUNDS = (1.0, 1.5, 2.0, 3.0)
PHOTOS_PER_SIZE = 16


def write_photos(folder: Path, size: tuple[int, int], count: int = PHOTOS_PER_SIZE, seed: int = 0) -> list[Path]:
    """`count` JPEGs of `size` (half of them portrait) from scikit-learn's photographs (deterministic)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(image) for image in load_sample_images().images]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width = int(photo.width * rng.uniform(0.5, 1.0))
        height = min(photo.height, width * 3 // 4)
        x, y = int(rng.integers(0, photo.width - width + 1)), int(rng.integers(0, photo.height - height + 1))
        target = size if i % 4 else size[::-1]  # one in four portrait
        crop = photo.crop((x, y, x + width, y + height)).resize(target, Image.Resampling.BICUBIC)
        pixels = np.asarray(crop, np.float32) + rng.normal(0, 3, (target[1], target[0], 3))
        paths.append(folder / f"photo-{size[0]}x{size[1]}-{i:02d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(paths[-1], quality=90)
    return paths


def preprocess_all(paths: list[Path], spec, bound: float | None) -> tuple[np.ndarray, float]:
    """(inputs (N, 3, H, W), ms per photo): exact when bound is None, else reduced at that bound."""
    import dataclasses

    import runtime.reduced_decode as reduced
    from runtime.preprocess import preprocess_image

    spec = dataclasses.replace(spec, decode="exact" if bound is None else "reduced")
    saved, reduced.REDUCE_BOUND = reduced.REDUCE_BOUND, bound or reduced.REDUCE_BOUND
    try:
        preprocess_image(str(paths[0]), spec)  # warm-up: codecs loaded
        best, arrays = float("inf"), None
        for _ in range(3):
            start = time.perf_counter()
            arrays = np.stack([preprocess_image(str(p), spec) for p in paths])
            best = min(best, time.perf_counter() - start)
        return arrays, 1000 * best / len(paths)
    finally:
        reduced.REDUCE_BOUND = saved


def compare_sizes(checkpoint: Path, folder: Path) -> list[dict]:
    import runtime
    from runtime.predictor import softmax
    from runtime.preprocess import PreprocessSpec

    rows = []
    with runtime.load(checkpoint, workers=0) as predictor:
        # ImageNet's eval preprocessing at the model's input size (256 -> 224), whatever the checkpoint
        # trained with: the resize a photograph meets in deployment
        meta = predictor.metadata.preprocess
        spec = PreprocessSpec.for_image_size(meta.crop, mean=meta.mean, std=meta.std)
        std = np.asarray(spec.std, np.float32)[:, None, None]
        for size in SIZES:
            paths = write_photos(folder, size)
            exact, exact_ms = preprocess_all(paths, spec, None)
            p_exact = softmax(predictor.predict_logits(exact))
            for bound in BOUNDS:
                inputs, ms = preprocess_all(paths, spec, bound)
                p = softmax(predictor.predict_logits(inputs))
                rows.append(
                    {
                        "size": f"{size[0]}x{size[1]}",
                        "bound": bound,
                        "photos": len(paths),
                        "top1_same": int((p.argmax(1) == p_exact.argmax(1)).sum()),
                        "max_dp": float(np.abs(p - p_exact).max()),
                        "max_dx_levels": float((np.abs(inputs - exact) * std * 255).max()),
                        "mean_dx_levels": float((np.abs(inputs - exact) * std * 255).mean()),
                        "exact_ms": exact_ms,
                        "reduced_ms": ms,
                    }
                )
            for path in paths:
                path.unlink()
    return rows


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| photo size | bound | top-1 same | max abs. delta p | max / mean delta x (8-bit levels) | exact ms | reduced ms | speed-up |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['bound']:g} | {r['top1_same']}/{r['photos']} | {r['max_dp']:.4f} | "
            f"{r['max_dx_levels']:.1f} / {r['mean_dx_levels']:.2f} | {r['exact_ms']:.1f} | {r['reduced_ms']:.1f} | "
            f"{r['exact_ms'] / r['reduced_ms']:.1f}x |"
        )
    return lines


@group()
def main() -> None:
    """Reduced against exact decoding (README, "Camera photos")."""


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_file_option()
def compare(checkpoint: Path, json_path: Path | None) -> None:
    """Compare reduced and exact decoding on photographs at several sizes, with CHECKPOINT's predictions."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = compare_sizes(checkpoint, Path(tmp))
    text = json.dumps(rows, indent=1)
    click.echo("\n".join(markdown(rows)), err=json_path is not None and str(json_path) == "-")
    if json_path is not None:
        click.echo(text) if str(json_path) == "-" else json_path.write_text(text + "\n")


@main.command("write-photos")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@files_count_option(48, "Per size.")
def write_photo_folders(out: Path, count: int) -> None:
    """OUT/4032x3024/: COUNT camera-sized photos (write_photos); OUT/500x375/: the same photos downsized."""
    from PIL import Image

    big, small = out / "4032x3024", out / "500x375"
    big.mkdir(parents=True, exist_ok=True)
    small.mkdir(exist_ok=True)
    for path in write_photos(big, (4032, 3024), count):
        with Image.open(path) as image:
            _small_copy(image).save(small / path.name, quality=90)
    click.echo(f"wrote {count} photos into each of {big} and {small}")


def _small_copy(image: Any) -> Any:
    """The photo at 500x375 (375x500 portrait), downsized as a camera app would (Lanczos)."""
    from PIL import Image

    width, height = image.size
    size = (500, 375) if width >= height else (375, 500)
    return image.resize(size, Image.Resampling.LANCZOS)


if __name__ == "__main__":
    main()
