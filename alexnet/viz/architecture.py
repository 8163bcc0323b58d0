"""The network as a diagram: one row per layer, parameters and MACs drawn to scale.

The numbers are `alexnet.summary.summarize`'s (alexnet-info's table), never recomputed. Both
bar panels are linear, so the picture shows what the table hides in its digits: the three
linear layers hold ~96% of the parameters (fc6 alone ~60%), the convolutions ~90% of the
multiply-accumulates.
"""

from __future__ import annotations

from alexnet.plots import figure_pixels
from alexnet.summary import ModelSummary

WIDTH = 1400  # pixels
ROW_HEIGHT = 24
HEADER_HEIGHT = 150
CLASSIFIER_COLOUR, FEATURES_COLOUR, OTHER_COLOUR = "tab:orange", "tab:blue", "tab:grey"
PARAMETERS_TITLE, MACS_TITLE = "parameters", "multiply-accumulates (MACs) per image"


def architecture_size(summary: ModelSummary) -> tuple[int, int]:
    """(width, height) in pixels of the picture of `summary`."""
    return WIDTH, HEADER_HEIGHT + ROW_HEIGHT * len(summary.rows)


def _short(value: float, digits: str = ".1f") -> str:
    """37752832 -> "37.8M" (bar labels); with digits="g", 5000000 -> "5M" (axis ticks)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:{digits}}{unit}"
    return f"{value:g}" if digits == "g" else f"{value:.0f}"


def _colour(name: str) -> str:
    return (
        FEATURES_COLOUR
        if name.startswith("features.")
        else CLASSIFIER_COLOUR
        if name.startswith("classifier.")
        else OTHER_COLOUR
    )


def _share(summary: ModelSummary, prefix: str) -> tuple[int, int]:
    rows = [r for r in summary.rows if r.name.startswith(prefix)]
    return sum(r.parameters for r in rows), sum(r.macs for r in rows)


def headline(summary: ModelSummary) -> str:
    """Where the parameters and the work are: the sentence above the diagram."""
    params, macs = _share(summary, "classifier.")
    total_p, total_m = max(summary.total_parameters, 1), max(summary.total_macs, 1)
    return (
        f"AlexNet ({summary.variant}, {summary.num_classes} classes, 3x{summary.image_size}x{summary.image_size}): "
        f"{summary.total_parameters:,} parameters, {summary.total_macs:,} MACs per image\n"
        f"classifier (fc6-fc8): {params / total_p:.0%} of the parameters, {macs / total_m:.0%} of the MACs; "
        f"convolutions: {1 - params / total_p:.0%} of the parameters, {1 - macs / total_m:.0%} of the MACs"
    )


def architecture_figure(summary: ModelSummary, labels: dict[str, str]):
    """The diagram as a matplotlib Figure; `labels` maps state_dict names to paper names (alexnet.layers)."""
    width, height = architecture_size(summary)
    fig = figure_pixels(width, height)
    rows = summary.rows
    grid = fig.add_gridspec(
        1, 3, width_ratios=[1.15, 1, 1], left=0.01, right=0.97, top=1 - 95 / height, bottom=40 / height
    )
    table, params_ax, macs_ax = (fig.add_subplot(grid[0, i]) for i in range(3))
    positions = list(range(len(rows)))
    colours = [_colour(r.name) for r in rows]
    for ax, values, title in (
        (params_ax, [r.parameters for r in rows], PARAMETERS_TITLE),
        (macs_ax, [r.macs for r in rows], MACS_TITLE),
    ):
        ax.barh(positions, values, color=colours, height=0.7)
        top = max(values) or 1
        for y, value in zip(positions, values):
            ax.text(value + top * 0.01, y, _short(value) if value else "", va="center", fontsize=8)
        ax.set(title=title, ylim=(len(rows) - 0.5, -0.5), xlim=(0, top * 1.18), yticks=[])
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_formatter(lambda value, _pos: _short(value, "g"))
    table.set(xlim=(0, 1), ylim=(len(rows) - 0.5, -0.5))
    table.axis("off")
    mono = {"va": "center", "fontsize": 9, "family": "monospace"}
    # One monospaced line per row, the name drawn over its blank first column in its section's colour.
    table.text(0, -1.2, f"{'layer':<9}{'type':<18}{'output':>13}{'parameters':>13}", weight="bold", **mono)
    for y, row in zip(positions, rows):
        shape = "x".join(str(d) for d in row.output_shape)
        table.text(0, y, f"{labels.get(row.name, row.name):<9}", color=_colour(row.name), **mono)
        table.text(0, y, f"{'':<9}{row.kind:<18}{shape:>13}{row.parameters:>13,}", **mono)
    fig.suptitle(headline(summary), fontsize=11, x=0.01, ha="left", y=1 - 12 / height, va="top")
    return fig
