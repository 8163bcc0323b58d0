"""alexnet-report's pages on hand-made documents (tests/report_docs.py): "Ship this" first, plain skip
reasons, a reproduce block that wraps, and a readable accuracy vs latency plot."""

from __future__ import annotations

import shlex

import pytest
from report_docs import COMMAND, document

from benchmarks import deploy_report
from benchmarks.report_pages import STYLE, command_lines, render_html, render_markdown, table_rows
from benchmarks.report_plots import MIN_ACCURACY_SPAN, accuracy_axes, accuracy_limits, spread
from benchmarks.suite import Row


def _section(markdown: str, title: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_ship_this_comes_first_and_names_the_file_per_goal():
    """Issue item 1: the first section names, per goal, the file with its figures, all read from the document."""
    doc = document()
    markdown = render_markdown(doc)
    assert [line for line in markdown.splitlines() if line.startswith("## ")][0] == "## Ship this"
    section = _section(markdown, "## Ship this")
    assert "One file wins every goal on cpu: `report/artifacts/model-int8.onnx` (onnx int8)." in section
    rows = {line.split(" | ")[0][2:]: line for line in section if line.startswith("| ") and "`" in line}
    assert set(rows) == {"lowest latency", "smallest", "highest throughput"}
    cells = rows["lowest latency"].split(" | ")
    assert cells[1:8] == ["`report/artifacts/model-int8.onnx`", "ONNX", "int8", "57.2", "90.00%", "99.75%"] + [
        "p50 2.05 ms at batch 1"
    ]
    assert cells[8].startswith("the lowest p50 latency of the 3 artifacts within the accuracy gate timed on cpu")
    # one source of truth: the section reads the document's numbers, it does not compute its own
    doc["artifacts"][3]["top1"], doc["artifacts"][3]["size_bytes"] = 0.8123, 12_345_678
    section = _section(render_markdown(doc), "## Ship this")
    assert all("81.23%" in line and "| 12.3 |" in line for line in section if line.startswith("| ") and "`" in line)


def test_ship_this_in_html_is_the_first_section():
    html5lib = pytest.importorskip("html5lib")
    page = html5lib.parse(render_html(document()), namespaceHTMLElements=False)
    assert [h.text for h in page.findall(".//h2")][:2] == ["Ship this", "How it was measured"]
    ship = page.find(".//table[@class='ship']")
    files = [tr.findall("td")[1].find("code").text for tr in ship.findall(".//tbody/tr")]
    assert files == ["report/artifacts/model-int8.onnx"] * 3


def test_nothing_to_ship_is_said():
    doc = document()
    doc["recommendations"] = [{**r, "label": None, "why": "no artifact within the accuracy gate was timed on cpu"}
                              for r in doc["recommendations"]]  # fmt: skip
    for r in doc["recommendations"]:
        r.pop("reason")
    section = _section(render_markdown(doc), "## Ship this")
    assert sum("| nothing to ship |" in line for line in section) == 3
    assert "no artifact within the accuracy gate was timed on cpu" in section[-2]


def test_skip_reasons_are_one_plain_sentence():
    """Issue item 3: who skipped and why, once; "the gate" only where the accuracy gate refused."""
    emulated = Row("torchscript", "fp16", "cpu", None, status="skipped", reason="fp16 on CPU is an emulation here")
    oom = [Row("onnx", "fp32", "cpu", n, status="failed", reason="out of memory") for n in (32, 8)]
    assert deploy_report.timing_reasons([emulated]) == ["skipped by the benchmark: fp16 on CPU is an emulation here"]
    assert deploy_report.timing_reasons(oom) == ["failed in the benchmark at batch 8, 32: out of memory"]
    entry = deploy_report.Entry("torchscript", "fp16", "model-fp16.pt")
    deploy_report.attach_timings([entry], [emulated], ["cpu"])
    doc = document()
    doc["artifacts"][1] = entry.to_dict()
    status = {row[0]: row[-1] for row in table_rows(doc, "cpu")[1]}
    assert status["torchscript fp16"] == "skipped by the benchmark: fp16 on CPU is an emulation here"
    markdown = render_markdown(doc)
    assert "Left out by the gate" not in markdown and "status skipped" not in markdown
    assert all(line.count("skipped") <= 1 for line in markdown.splitlines())
    assert "- `coreml fp16`: skipped by the benchmark: Core ML predicts only on macOS" in markdown


def test_reproduce_block_wraps_and_still_runs_as_one_command():
    """Issue item 4: one flag per line, continued with " \\" (Markdown); the HTML <pre> wraps too."""
    text = command_lines(COMMAND)
    lines = text.splitlines()
    assert len(lines) == 10 and all(line.endswith(" \\") for line in lines[:-1])
    assert max(map(len, lines)) < 60
    assert shlex.split(text.replace("\\\n", "")) == shlex.split(COMMAND)  # what a shell would run
    assert lines[-1] == "    -o 'report dir/with a long name'"
    markdown = render_markdown(document())
    assert f"```bash\n{text}\n```" in markdown
    assert "white-space:pre-wrap" in STYLE and f"<pre>{text.replace(chr(39), '&#x27;')}</pre>" in render_html(
        document()
    )
    assert command_lines("alexnet-report 'unclosed") == "alexnet-report 'unclosed"


@pytest.mark.parametrize(
    "values, limits",
    [
        ([91.75, 92.0], (89.0, 95.0)),
        ([99.5, 100.0], (94.0, 100.0)),
        ([0.0, 1.0], (0.0, 5.0)),
        ([20.0, 90.0], (13.0, 97.0)),
    ],
)
def test_accuracy_axis_is_a_few_points_wide_in_whole_numbers(values, limits):
    """Issue item 5: 91.75-92.00 no longer fills the axis."""
    low, high = accuracy_limits(values)
    assert (low, high) == limits
    assert high - low >= MIN_ACCURACY_SPAN and low <= min(values) and high >= max(values) and 0 <= low < high <= 100


def test_labels_are_spread_apart_in_order():
    wanted = [0.5, 0.5, 0.51, 0.98, 0.99, 0.2]
    placed = spread(wanted, gap=0.06)
    assert placed == spread(wanted, gap=0.06)  # deterministic
    ordered = sorted(range(len(wanted)), key=lambda i: (wanted[i], i))
    ys = [placed[i] for i in ordered]
    assert all(b - a >= 0.06 - 1e-9 for a, b in zip(ys, ys[1:])) and 0 <= ys[0] and ys[-1] <= 1
    assert placed[5] == 0.2  # a label with room stays by its point
    assert spread([0.5, 0.5, 0.5], gap=0.1, ties=[-7.5, -14.8, -10.4]) == pytest.approx([0.7, 0.5, 0.6])
    crowded = spread([0.5] * 30, gap=0.06)  # more than fit: the gap shrinks, the labels stay in 0..1
    assert min(crowded) >= 0 and max(crowded) <= 1 + 1e-9 and len(set(crowded)) == 30


def test_accuracy_plot_labels_do_not_overlap():
    doc = document()
    for i, e in enumerate(doc["artifacts"]):  # five points within a quarter point and a millisecond
        e["top1"] = 0.9175 + 0.0005 * i
        e["devices"]["cpu"]["batches"] = [{"batch_size": 1, "p50_ms": 2.0 + 0.2 * i, "throughput_ips": 500}]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    axes = accuracy_axes(doc)
    canvas = FigureCanvasAgg(axes.figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in axes.texts]  # the text alone, not its leader line
    assert len(boxes) == 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert axes.get_ylim() == (89.0, 95.0)
    assert all(t.get_text() in {"", *map(str, range(89, 96))} for t in axes.get_yticklabels())
