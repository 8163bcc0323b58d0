"""alexnet-report's pages: report.md (tables to read), report.html (one self-contained page: the
tables and the plots as embedded PNGs, nothing fetched from a network). Both come from the JSON
document (`benchmarks.report_cli`), so a saved report.json can be rendered again. Both open with
"Ship this" (`benchmarks.report_ship`), the file to ship per goal.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Callable
from typing import Any

from benchmarks.markdown import md_code, md_fence, md_text
from benchmarks.report import machine_line, model_line, of_floor
from benchmarks.report_plots import plots
from benchmarks.report_ship import ship_html, ship_markdown
from runtime import formats

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
    """The status cell: "ok", or the plain sentence of who skipped or failed the row and why (each reason
    already names its step: "export failed: ...", "skipped by the benchmark: ...")."""
    timing = entry["devices"].get(device) or {}
    if entry["status"] != "ok":
        checked = entry["status"] == "skipped" and entry.get("check")  # Core ML, no evaluator: its structural checks
        verdict = " (structural checks " + ("PASS" if entry.get("check_passed") else "FAIL") + ")" if checked else ""
        return f"{_short(entry['reason'])}{verdict}"
    if entry.get("stand_in") and not timing.get("batches"):
        return entry.get("note") or f"evaluated by {entry['stand_in']}, not timed"
    if timing.get("status") not in (None, "ok") or not timing.get("batches"):
        return _short(timing.get("reason") or f"not timed on {device}")
    return "ok" + (f" ({_short(timing['reason'])})" if timing.get("reason") else "")


def _not_timed(entry: dict[str, Any]) -> str:
    """The latency cell of a row evaluated by a stand-in (Core ML off macOS): never a number."""
    return f"— (reference evaluator, not {formats.get(entry['format']).title})" if entry.get("stand_in") else ""


def details(doc: dict[str, Any], device: str) -> list[str]:
    """The whole reason (and check) of every row that is not plainly ok on `device`."""
    out = []
    for e in doc["artifacts"]:
        timing = e["devices"].get(device) or {}
        reasons = [e.get("note"), e.get("reason")]
        reasons.append(timing.get("reason") if timing.get("reason") != e.get("reason") else None)
        if (e["status"] != "ok" or e.get("stand_in")) and e.get("check"):
            reasons.append(f"check: {e['check']}")
        if e.get("removed"):
            reasons.append("its file was removed after the report: no goal recommends it")
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
        dash = "—" if e.get("stand_in") else ""  # evaluated by a stand-in: its speed is not the format's
        rows.append(
            [
                e["label"],
                "" if e.get("size_bytes") is None else f"{e['size_bytes'] / 1e6:.1f}",
                _pct(e.get("top1")),
                _pct(e.get("agreement")),
                "" if diff is None else f"{diff:.2e}",
                f"{first['p50_ms']:.2f}" if first else _not_timed(e),
                f"{last['throughput_ips']:.1f}" if last else dash,
                of_floor(last) if last else dash,
                _status(e, device),
            ]
        )
    return header, rows


def _recommendation_lines(doc: dict[str, Any], device: str) -> list[str]:
    lines = []
    for rec in (r for r in doc["recommendations"] if r["device"] == device):
        chosen = f"{md_code(rec['label'])}: " if rec["label"] else ""
        lines.append(f"- **{md_text(rec['goal'])}**: {chosen}{md_text(rec['why'])}")
    left_out = [x for x in doc["excluded"] if x["device"] == device]
    if left_out:
        lines += ["", "Not recommended here:", ""]
        lines += [f"- {md_code(x['label'])}: {md_text(x['why'])}" for x in left_out]
    return lines


def command_lines(command: str) -> str:
    """The command as shell lines continued with " \\": the program and its arguments, then one flag and its
    value per line (so that it fits a page, and pastes as one command)."""
    try:
        words = shlex.split(command)
    except ValueError:  # not shell syntax: as it is
        return command
    groups: list[list[str]] = []
    for word in words:
        if not groups or (word.startswith("-") and len(word) > 1):
            groups.append([word])
        else:
            groups[-1].append(word)
    return " \\\n    ".join(shlex.join(group) for group in groups)


def _header_lines(doc: dict[str, Any], code: Callable[[str], str], text: Callable[[str], str]) -> list[str]:
    """The list under the title; `code` and `text` escape names and paths for the page's language."""
    gate = doc["gate"]
    return [
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
    lines = ["# AlexNet deployment report", "", *ship_markdown(doc), "## How it was measured", ""]
    lines += [
        *_header_lines(doc, md_code, md_text),
        "",
        "Reproduce:",
        "",
        md_fence(command_lines(doc["command"]), "bash"),
    ]
    lines.append("")
    for device in doc["devices"]:
        header, rows = table_rows(doc, device)
        lines += [f"## {md_text(device)}", "", "| " + " | ".join(map(md_text, header)) + " |"]
        lines += ["|---|" + "--:|" * 7 + "---|", *("| " + " | ".join(map(md_text, row)) + " |" for row in rows)]
        lines += ["", *(f"- {md_text(line)}" for line in details(doc, device)), ""]
        lines += ["### Recommendations", "", *_recommendation_lines(doc, device), ""]
    lines += [NOTES, ""]
    if doc["warnings"]:
        lines += ["**Warnings**", "", *(f"- {md_text(w)}" for w in doc["warnings"]), ""]
    return "\n".join(lines)


STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:.3em .5em}"
    "td.n{text-align:right}th{background:#f3f3f3}code,pre{background:#f6f6f6}"
    # a long command wraps on the page instead of running off it (its lines end in " \\" already)
    "pre{padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere}table.ship td{vertical-align:top}"
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
    parts += [f"<style>{STYLE}</style></head><body><h1>AlexNet deployment report</h1>", ship_html(doc)]
    parts += ["<h2>How it was measured</h2><ul>"]
    parts += [f"<li>{line[2:]}</li>" for line in _header_lines(doc, lambda c: f"<code>{e(c)}</code>", e)]
    parts += ["</ul><p>Reproduce:</p>", f"<pre>{e(command_lines(doc['command']))}</pre>"]
    for device in doc["devices"]:
        parts += [f"<h2>{e(device)}</h2>", _html_table(*table_rows(doc, device)), "<ul>"]
        parts += [f"<li>{e(line)}</li>" for line in details(doc, device)]
        parts += ["</ul><h3>Recommendations</h3><ul>"]
        for rec in (r for r in doc["recommendations"] if r["device"] == device):
            chosen = f"<code>{e(rec['label'])}</code>: " if rec["label"] else ""
            parts.append(f"<li><b>{e(rec['goal'])}</b>: {chosen}{e(rec['why'])}</li>")
        parts.append("</ul>")
        left_out = [x for x in doc["excluded"] if x["device"] == device]
        if left_out:
            items = "".join(f"<li><code>{e(x['label'])}</code>: {e(x['why'])}</li>" for x in left_out)
            parts.append(f"<p>Not recommended here:</p><ul>{items}</ul>")
    parts.append(f"<p>{e(NOTES)}</p>")
    for title, png in plots(doc):
        parts.append(f'<h2>{e(title)}</h2><img alt="{e(title)}" src="data:image/png;base64,{png}">')
    if doc["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{e(w)}</li>" for w in doc["warnings"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
