"""alexnet-report's pages: report.md (tables to read), report.html (one self-contained page: the
tables and the plots as embedded PNGs, nothing fetched from a network). Both come from the JSON
document (`benchmarks.report_cli`), so a saved report.json can be rendered again.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

from benchmarks.markdown import md_code, md_text
from benchmarks.report import machine_line, model_line, of_floor

COLUMNS = (
    "artifact",
    "size MB",
    "top-1",
    "agreement",
    "max |Δlogit|",
    "p50 ms (batch {small})",
    "images/s (batch {large})",
    "of floor (batch {large})",
    "status",
)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def _short(text: str) -> str:
    """A reason's first clause, for a table cell (the whole of it is listed under the table and in the JSON)."""
    return text.split("; ")[0]


def _status(entry: dict[str, Any], device: str) -> str:
    timing = entry["devices"].get(device) or {}
    if entry["status"] != "ok":
        checked = entry["status"] == "skipped" and entry.get("check")  # Core ML off macOS: its structural checks
        verdict = " (structural checks " + ("PASS" if entry.get("check_passed") else "FAIL") + ")" if checked else ""
        return f"{entry['status']}: {_short(entry['reason'])}{verdict}"
    if timing.get("status") not in (None, "ok") or not timing.get("batches"):
        return f"{timing.get('status', 'skipped')} on {device}: {_short(timing.get('reason') or 'not timed')}"
    return "ok" + (f" ({_short(timing['reason'])})" if timing.get("reason") else "")


def details(doc: dict[str, Any], device: str) -> list[str]:
    """The whole reason (and check) of every row that is not plainly ok on `device`."""
    out = []
    for e in doc["artifacts"]:
        timing = e["devices"].get(device) or {}
        reasons = [e.get("reason"), timing.get("reason") if timing.get("reason") != e.get("reason") else None]
        if e["status"] != "ok" and e.get("check"):
            reasons.append(f"check: {e['check']}")
        text = "; ".join(r for r in reasons if r)
        if text:
            out.append(f"{e['label']}: {text}")
    return out


def table_rows(doc: dict[str, Any], device: str) -> tuple[list[str], list[list[str]]]:
    """The header and one row of cells per artifact on `device`."""
    sizes = doc["batch_sizes"]
    small, large = min(sizes), max(sizes)
    header = [c.format(small=small, large=large) for c in COLUMNS]
    rows = []
    for e in doc["artifacts"]:
        batches = {b["batch_size"]: b for b in (e["devices"].get(device) or {}).get("batches", [])}
        first, last = batches.get(small, {}), batches.get(large, {})
        diff = e.get("max_abs_diff")
        rows.append(
            [
                e["label"],
                "" if e.get("size_bytes") is None else f"{e['size_bytes'] / 1e6:.1f}",
                _pct(e.get("top1")),
                _pct(e.get("agreement")),
                "" if diff is None else f"{diff:.2e}",
                f"{first['p50_ms']:.2f}" if first else "",
                f"{last['throughput_ips']:.1f}" if last else "",
                of_floor(last) if last else "",
                _status(e, device),
            ]
        )
    return header, rows


def _recommendation_lines(doc: dict[str, Any], device: str) -> list[str]:
    lines = []
    for rec in (r for r in doc["recommendations"] if r["device"] == device):
        chosen = f"{md_code(rec['label'])}: " if rec["label"] else ""
        lines.append(f"- **{md_text(rec['goal'])}**: {chosen}{md_text(rec['why'])}")
    return lines


def _header_lines(doc: dict[str, Any], code: Callable[[str], str], text: Callable[[str], str]) -> list[str]:
    """The list under the title; `code` and `text` escape names and paths for the page's language."""
    gate = doc["gate"]
    return [
        f"- Reproduce: {code(doc['command'])}",
        f"- Date: {text(doc['machine']['date'])}",
        f"- Machine: {text(machine_line(doc['machine']))}",
        f"- Model: {model_line(doc['model'], code)}",
        f"- Accuracy: {doc['data']['images']} images of the val split of {code(doc['data']['source'])}, on the CPU; "
        f"agreement and max |Δlogit| against the fp32 checkpoint on the same images",
        f"- Accuracy gate (as the int8 exporter's): agreement >= {1 - gate['max_agreement_loss']:.0%}, top-1 at most "
        f"{gate['max_accuracy_drop']:.0%} below the checkpoint's, validation passed",
    ]


NOTES = (
    "p50: median latency of one batch; images/s: batch / mean latency; of floor: the physical floor (the larger of "
    "the instruction-set peak and the best matrix multiply measured, and memory bandwidth) / p50, 'beats floor*' "
    "when faster (see the benchmark section of report.json). Timings come from alexnet-bench's harness: one spawned "
    "worker process per artifact and device, warmed up, timed in alternating rounds."
)


def render_markdown(doc: dict[str, Any]) -> str:
    lines = ["# AlexNet deployment report", "", *_header_lines(doc, md_code, md_text), ""]
    for device in doc["devices"]:
        header, rows = table_rows(doc, device)
        lines += [f"## {md_text(device)}", "", "| " + " | ".join(map(md_text, header)) + " |"]
        lines += ["|---|" + "--:|" * 7 + "---|", *("| " + " | ".join(map(md_text, row)) + " |" for row in rows)]
        lines += ["", *(f"- {md_text(line)}" for line in details(doc, device)), ""]
        lines += ["### Recommendations", "", *_recommendation_lines(doc, device), ""]
    if doc["excluded"]:
        left_out = "; ".join(f"{md_code(label)} ({md_text(why)})" for label, why in doc["excluded"])
        lines += [f"Left out by the gate: {left_out}", ""]
    lines += [NOTES, ""]
    if doc["warnings"]:
        lines += ["**Warnings**", "", *(f"- {md_text(w)}" for w in doc["warnings"]), ""]
    return "\n".join(lines)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of each plot: accuracy vs latency, size, throughput per batch size."""
    from matplotlib.figure import Figure  # a Figure, never pyplot: no global backend or figure state

    small = min(doc["batch_sizes"])
    entries = doc["artifacts"]
    scatter = Figure(figsize=(7, 4.5)).subplots()
    curves = Figure(figsize=(7, 4.5)).subplots()
    for device in doc["devices"]:
        for e in entries:
            batches = sorted((e["devices"].get(device) or {}).get("batches", []), key=lambda b: b["batch_size"])
            first = next((b for b in batches if b["batch_size"] == small), None)
            if first and e.get("top1") is not None:
                scatter.scatter(first["p50_ms"], 100 * e["top1"])
                scatter.annotate(f"{e['label']} ({device})", (first["p50_ms"], 100 * e["top1"]), fontsize=7)
            if batches:
                x = [b["batch_size"] for b in batches]
                curves.plot(x, [b["throughput_ips"] for b in batches], marker="o", label=f"{e['label']} ({device})")
    scatter.set(xlabel=f"p50 latency at batch {small} (ms)", ylabel="top-1 (%)", title="accuracy vs latency")
    scatter.grid(True, alpha=0.3)
    curves.set(xscale="log", xlabel="batch size", ylabel="images / s", title="throughput per batch size")
    curves.set_xticks(doc["batch_sizes"], [str(n) for n in doc["batch_sizes"]])
    curves.grid(True, alpha=0.3)
    if curves.lines:
        curves.legend(fontsize=7)
    sized = [e for e in entries if e.get("size_bytes")]
    bars = Figure(figsize=(7, 0.4 * len(sized) + 1.5)).subplots()
    bars.barh([e["label"] for e in sized], [e["size_bytes"] / 1e6 for e in sized])
    bars.set(xlabel="MB on disk", title="artifact size")
    out = []
    for title, axes in (("Accuracy vs latency", scatter), ("Size", bars), ("Throughput per batch size", curves)):
        axes.figure.tight_layout()
        out.append((title, _png(axes.figure)))
    return out


STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:.3em .5em}"
    "td.n{text-align:right}th{background:#f3f3f3}code,pre{background:#f6f6f6}pre{padding:.5em;overflow-x:auto}"
)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{'' if i in (0, len(row) - 1) else ' class=n'}>{html.escape(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(doc: dict[str, Any]) -> str:
    """One page, no external resources: styles inline, plots as data: URIs."""
    e = html.escape
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>AlexNet deployment report</title>"]
    parts += [f"<style>{STYLE}</style></head><body><h1>AlexNet deployment report</h1><ul>"]
    parts += [f"<li>{line[2:]}</li>" for line in _header_lines(doc, lambda c: f"<code>{e(c)}</code>", e)]
    parts += ["</ul>", f"<pre>{e(doc['command'])}</pre>"]
    for device in doc["devices"]:
        parts += [f"<h2>{e(device)}</h2>", _html_table(*table_rows(doc, device)), "<ul>"]
        parts += [f"<li>{e(line)}</li>" for line in details(doc, device)]
        parts += ["</ul><h3>Recommendations</h3><ul>"]
        for rec in (r for r in doc["recommendations"] if r["device"] == device):
            chosen = f"<code>{e(rec['label'])}</code>: " if rec["label"] else ""
            parts.append(f"<li><b>{e(rec['goal'])}</b>: {chosen}{e(rec['why'])}</li>")
        parts.append("</ul>")
    if doc["excluded"]:
        parts.append("<p>Left out by the gate: " + "; ".join(f"{e(a)} ({e(w)})" for a, w in doc["excluded"]) + "</p>")
    parts.append(f"<p>{e(NOTES)}</p>")
    for title, png in plots(doc):
        parts.append(f'<h2>{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,{png}">')
    if doc["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in doc["warnings"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
