"""A procedurally generated, learnable image set: the embedded default data.

Each class is a shape (circle, square, triangle, ...) drawn with a random colour, size,
position and rotation on a random background (solid or gradient) with pixel noise. The
class is the shape alone, so a network must learn shape, not colour. Image `index` of a
split is a pure function of (seed, split, index): the same seed gives the same images on
every machine, which makes evaluation after training reproducible without files on disk.

numpy + PIL only (no torch), so the export validator and tests can use it too.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "stripes",
    "checker",
)
SPLITS = ("train", "val")


def _rng(index: int, split: str, seed: int) -> np.random.Generator:
    # crc32 keeps the split's stream stable across Python runs (str hash is salted).
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    """A solid or linear-gradient background and its mean colour (3,)."""
    first = rng.integers(0, 256, 3)
    second = np.clip(first + rng.integers(-60, 61, 3), 0, 255)  # gentle gradients: the shape stays the signal
    if rng.random() < 0.5:
        return Image.new("RGB", (size, size), tuple(int(c) for c in first)), first.astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    small = max(2, size // 8)  # a linear ramp survives bilinear upsampling: compute it small, resize
    axis = np.linspace(0.0, 1.0, small, dtype=np.float32)
    t = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None]  # (s, s): position along the gradient
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    pixels = first.astype(np.float32) + (second - first).astype(np.float32) * t[..., None]  # (s, s, 3)
    ramp = Image.fromarray(pixels.astype(np.uint8), "RGB").resize((size, size), Image.Resampling.BILINEAR)
    return ramp, (first + second).astype(np.float32) / 2


def _contrasting_colour(rng: np.random.Generator, background_mean: np.ndarray) -> tuple[int, int, int]:
    for _ in range(20):  # keep the shape visible against its background
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background_mean).sum() > 180:
            break
    return tuple(int(c) for c in colour)


def _polygon(
    cx: float, cy: float, radius: float, angle: float, points: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Unit-circle `points` (x, y) scaled by `radius`, rotated by `angle`, moved to (cx, cy)."""
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points]


def _draw_shape(draw: ImageDraw.ImageDraw, label: int, cx: float, cy: float, r: float, angle: float, colour) -> None:
    name = SYNTHETIC_CLASSES[label]
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif name == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, int(r / 3)))
    elif name == "square":
        draw.polygon(_polygon(cx, cy, r, angle, [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]), fill=colour)
    elif name == "checker":  # a 3x3 checkerboard patch: a texture class, as distinct from "stripes" as from shapes
        for row in range(3):
            for col in range(3):
                if (row + col) % 2 == 0:
                    x0, y0 = -1 + col * 2 / 3, -1 + row * 2 / 3
                    cell = [(x0, y0), (x0 + 2 / 3, y0), (x0 + 2 / 3, y0 + 2 / 3), (x0, y0 + 2 / 3)]
                    draw.polygon(_polygon(cx, cy, r * 0.85, angle, cell), fill=colour)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, r, angle, [(0, -1), (0.87, 0.5), (-0.87, 0.5)]), fill=colour)
    elif name == "star":
        pts = [
            (
                math.cos(k * math.pi / 5 - math.pi / 2) * (1 if k % 2 == 0 else 0.4),
                math.sin(k * math.pi / 5 - math.pi / 2) * (1 if k % 2 == 0 else 0.4),
            )
            for k in range(10)
        ]
        draw.polygon(_polygon(cx, cy, r, angle, pts), fill=colour)
    elif name == "cross":
        for bar in ([(-1, -0.25), (1, -0.25), (1, 0.25), (-1, 0.25)], [(-0.25, -1), (0.25, -1), (0.25, 1), (-0.25, 1)]):
            draw.polygon(_polygon(cx, cy, r, angle, bar), fill=colour)
    elif name == "stripes":
        for offset in (-0.7, 0.0, 0.7):
            bar = [(-1, offset - 0.18), (1, offset - 0.18), (1, offset + 0.18), (-1, offset + 0.18)]
            draw.polygon(_polygon(cx, cy, r, angle, bar), fill=colour)


def render_synthetic(index: int, *, split: str, image_size: int, seed: int = 0) -> tuple[Image.Image, int]:
    """Image `index` of `split` -> (RGB image of image_size x image_size, label)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = _rng(index, split, seed)
    label = index % len(SYNTHETIC_CLASSES)  # balanced classes, interleaved
    # Draw at 2x and downsample: antialiased edges at any size, even 32 px.
    canvas = 2 * image_size
    image, background_mean = _background(rng, canvas)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.28, 0.42) * canvas
    cx, cy = (rng.uniform(radius, canvas - radius) for _ in range(2))
    _draw_shape(draw, label, cx, cy, radius, rng.uniform(0, 2 * math.pi), _contrasting_colour(rng, background_mean))
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 0.8)))
    noise = rng.normal(0, rng.uniform(2, 8), (image_size, image_size, 3))
    pixels = np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), label


def write_synthetic_imagefolder(
    out_dir: str | os.PathLike,
    *,
    per_class: int,
    image_size: int = 64,
    seed: int = 0,
    val_per_class: int | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write OUT/train/<class>/*.png and OUT/val/<class>/*.png; returns images written per split.

    Each PNG is written to a temp name and renamed, so an interrupted run leaves no half files.
    """
    from tqdm import tqdm

    val_per_class = max(1, per_class // 4) if val_per_class is None else val_per_class
    counts = {"train": per_class * len(SYNTHETIC_CLASSES), "val": val_per_class * len(SYNTHETIC_CLASSES)}
    root = Path(out_dir)
    for split in SPLITS:
        for name in SYNTHETIC_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
    with tqdm(total=sum(counts.values()), desc="writing images", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            for index in range(counts[split]):
                image, label = render_synthetic(index, split=split, image_size=image_size, seed=seed)
                target = root / split / SYNTHETIC_CLASSES[label] / f"{index:06d}.png"
                tmp = target.with_name(f".{target.name}.tmp")
                image.save(tmp, format="PNG")
                os.replace(tmp, target)
                bar.update(1)
    return counts
