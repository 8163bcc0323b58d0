"""alexnet-report's plots, as PNGs for report.html: accuracy vs latency, size, throughput per batch size.

Matplotlib `Figure`s, never pyplot: no global backend or figure state. The accuracy axis is at least
`MIN_ACCURACY_SPAN` points wide in whole-number ticks (top-1 values a quarter point apart would otherwise
fill it, with ticks in hundredths), and the points are named in a column right of the plot, each label
joined to its point by a leader line and kept `LABEL_GAP` from the next (`spread`): labels never overlap,
however close the points.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

MIN_ACCURACY_SPAN = 5.0  # percentage points on the accuracy axis, at least
LABEL_GAP = 0.06  # between two labels' centres, as a fraction of the axes' height (7 pt text on ~240 pt)
LABEL_FONT = 7


def accuracy_limits(values: Sequence[float], min_span: float = MIN_ACCURACY_SPAN) -> tuple[float, float]:
    """Limits (percent) of an axis showing top-1 `values` (percent): padded by a point (or a tenth of their
    spread), at least `min_span` wide around their middle, whole numbers, within 0..100."""
    if not values:
        return 0.0, 100.0
    low, high = min(values), max(values)
    pad = max(1.0, 0.1 * (high - low))
    low, high = low - pad, high + pad
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    low, high = math.floor(low), math.ceil(high)
    if low < 0:
        low, high = 0, min(100, high - low)
    if high > 100:
        low, high = max(0, low - (high - 100)), 100
    return float(low), float(high)


def spread(
    positions: Sequence[float],
    gap: float = LABEL_GAP,
    low: float = 0.0,
    high: float = 1.0,
    ties: Sequence[float] | None = None,
) -> list[float]:
    """Label positions, one per point and in the points' order: each as near its point's position as the
    others allow, at least `gap` from the next (less when they cannot all fit), all within low..high, in
    the order of the positions. Deterministic: equal positions are ordered by `ties`, then by index."""
    count = len(positions)
    gap = min(gap, (high - low) / max(count - 1, 1))
    order = sorted(range(count), key=lambda i: (positions[i], ties[i] if ties else 0, i))
    placed: list[float] = []
    for i in order:  # upwards, each at least a gap above the last
        wanted = min(max(positions[i], low), high)
        placed.append(max(wanted, placed[-1] + gap) if placed else wanted)
    for k in range(count - 1, -1, -1):  # then down from the top, where the last ones were pushed past it
        placed[k] = min(placed[k], high if k == count - 1 else placed[k + 1] - gap)
    out = [0.0] * count
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _points(doc: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(label, p50 ms at the smallest batch, top-1 %) of every artifact timed there, per device."""
    small = min(doc["batch_sizes"])
    out = []
    for device in doc["devices"]:
        for e in doc["artifacts"]:
            batches = (e["devices"].get(device) or {}).get("batches", [])
            first = next((b for b in batches if b["batch_size"] == small), None)
            if first and e.get("top1") is not None:
                out.append((f"{e['label']} ({device})", first["p50_ms"], 100 * e["top1"]))
    return out


def accuracy_axes(doc: dict[str, Any]) -> Any:
    """The accuracy vs latency plot: one colour per point, named at the right with a leader line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    axes = Figure(figsize=(8, 4.5)).subplots()
    points = _points(doc)
    low, high = accuracy_limits([p[2] for p in points])
    axes.set_ylim(low, high)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    axes.set_xlim(0, 1.1 * max((p[1] for p in points), default=1.0))
    # Points level with each other: the one further right gets the lower label, so leader lines never cross.
    places = spread([(p[2] - low) / (high - low) for p in points], ties=[-p[1] for p in points])
    for number, ((label, x, y), place) in enumerate(zip(points, places, strict=True)):
        colour = f"C{number % 10}"
        axes.scatter(x, y, color=colour, zorder=3)
        axes.annotate(
            label,
            (x, y),
            xytext=(1.03, place),
            textcoords="axes fraction",
            va="center",
            fontsize=LABEL_FONT,
            color=colour,
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6, "alpha": 0.7},
            annotation_clip=False,
        )
    small = min(doc["batch_sizes"])
    axes.set(xlabel=f"p50 latency at batch {small} (ms)", ylabel="top-1 (%)", title="accuracy vs latency")
    axes.grid(True, alpha=0.3)
    return axes


def _curves(doc: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    axes = Figure(figsize=(7, 4.5)).subplots()
    for device in doc["devices"]:
        for e in doc["artifacts"]:
            batches = sorted((e["devices"].get(device) or {}).get("batches", []), key=lambda b: b["batch_size"])
            if batches:
                x = [b["batch_size"] for b in batches]
                axes.plot(x, [b["throughput_ips"] for b in batches], marker="o", label=f"{e['label']} ({device})")
    axes.set(xscale="log", xlabel="batch size", ylabel="images / s", title="throughput per batch size")
    axes.set_xticks(doc["batch_sizes"], [str(n) for n in doc["batch_sizes"]])
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=LABEL_FONT)
    return axes


def _sizes(doc: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    sized = [e for e in doc["artifacts"] if e.get("size_bytes")]
    axes = Figure(figsize=(7, 0.4 * len(sized) + 1.5)).subplots()
    axes.barh([e["label"] for e in sized], [e["size_bytes"] / 1e6 for e in sized])
    axes.set(xlabel="MB on disk", title="artifact size")
    return axes


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # tight: the labels right of the plot too
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of each plot: accuracy vs latency, size, throughput per batch size."""
    figures = (
        ("Accuracy vs latency", accuracy_axes(doc)),
        ("Size", _sizes(doc)),
        ("Throughput per batch size", _curves(doc)),
    )
    out = []
    for title, axes in figures:
        axes.figure.tight_layout()
        out.append((title, _png(axes.figure)))
    return out
