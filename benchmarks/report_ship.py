"""The report's first section, "Ship this": per device and goal (`benchmarks.recommend.GOALS`), the file
to ship, its format, precision, size, top-1, agreement with the PyTorch checkpoint and latency, with the
one line of why it wins; then the artifacts removed after the report (`benchmarks.report_prune`).

Every value is read from the report document (what report.json holds), never computed again.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from benchmarks.markdown import md_code, md_text
from runtime import formats

HEADER = ("goal", "file to ship", "format", "precision", "size MB", "top-1", "agreement with PyTorch", "latency", "why")


def _title(fmt: str) -> str:
    return "PyTorch checkpoint (eager)" if fmt == "checkpoint" else formats.get(fmt).title


def ship_rows(doc: dict[str, Any], device: str) -> list[dict[str, Any]]:
    """One dict per goal on `device`: the recommendation and the recommended entry's own figures."""
    entries = {e["label"]: e for e in doc["artifacts"]}
    rows = []
    for rec in (r for r in doc["recommendations"] if r["device"] == device):
        row = {"goal": rec["goal"], "label": rec["label"], "reason": rec.get("reason") or rec["why"]}
        entry = entries.get(rec["label"]) if rec["label"] else None
        if entry is not None:
            batches = (entry["devices"].get(device) or {}).get("batches") or []
            first = min(batches, key=lambda b: b["batch_size"], default={})
            row |= {key: entry.get(key) for key in ("path", "format", "precision", "size_bytes", "top1", "agreement")}
            row |= {"p50_ms": first.get("p50_ms"), "batch_size": first.get("batch_size")}
        rows.append(row)
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    """The row's cells after the goal and the file, as text."""
    if row["label"] is None:
        return ["", "", "", "", "", "", row["reason"]]
    pct = lambda v: "" if v is None else f"{v:.2%}"  # noqa: E731
    size = "" if row["size_bytes"] is None else f"{row['size_bytes'] / 1e6:.1f}"
    latency = "" if row["p50_ms"] is None else f"p50 {row['p50_ms']:.2f} ms at batch {row['batch_size']}"
    return [
        _title(row["format"]),
        row["precision"],
        size,
        pct(row["top1"]),
        pct(row["agreement"]),
        latency,
        row["reason"],
    ]


def _lead(rows: list[dict[str, Any]], device: str, code: Callable[[str], str], text: Callable[[str], str]) -> str:
    """A sentence when one file wins every goal on `device` ("" otherwise); `code` and `text` escape."""
    labels = {r["label"] for r in rows}
    if len(rows) > 1 and len(labels) == 1 and None not in labels:
        where = code(rows[0].get("path") or rows[0]["label"])
        return f"One file wins every goal on {text(device)}: {where} ({text(rows[0]['label'])})."
    return ""


def removed_sentence(doc: dict[str, Any]) -> str | None:
    """Which artifacts were deleted after the report, and how to keep them; None when none was."""
    pruning = doc.get("pruning") or {}
    removed = [e for e in doc["artifacts"] if e.get("removed")]
    if not removed:
        return None
    mb = sum(e.get("size_bytes") or 0 for e in removed) / 1e6
    names = ", ".join(f"{e['label']} ({(e.get('size_bytes') or 0) / 1e6:.1f} MB)" for e in removed)
    return (
        f"Removed after this report, because no goal recommends them ({mb:.1f} MB in all): {names}. Their rows "
        f"below and report.json still describe them; rerun with {pruning.get('keep_flag', '--keep-all-artifacts')} "
        "to keep every artifact."
    )


def ship_markdown(doc: dict[str, Any]) -> list[str]:
    lines = ["## Ship this", ""]
    for device in doc["devices"]:
        rows = ship_rows(doc, device)
        lead = _lead(rows, device, md_code, md_text)
        lines += [f"### {md_text(device)}", ""] + ([lead, ""] if lead else [])
        lines += ["| " + " | ".join(HEADER) + " |", "|---|---|---|---|--:|--:|--:|--:|---|"]
        for row in rows:
            file = md_code(row.get("path") or row["label"]) if row["label"] else "nothing to ship"
            cells = [md_text(row["goal"]), file, *map(md_text, _cells(row))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    removed = removed_sentence(doc)
    return lines + ([md_text(removed), ""] if removed else [])


def ship_html(doc: dict[str, Any]) -> str:
    e = html.escape
    parts = ["<h2>Ship this</h2>"]
    for device in doc["devices"]:
        rows = ship_rows(doc, device)
        lead = _lead(rows, device, lambda c: f"<code>{e(c)}</code>", e)
        parts.append(f"<h3>{e(device)}</h3>" + (f"<p>{lead}</p>" if lead else ""))
        body = ""
        for row in rows:
            file = f"<code>{e(row.get('path') or row['label'])}</code>" if row["label"] else "nothing to ship"
            cells = [f"<td><b>{e(row['goal'])}</b></td>", f"<td>{file}</td>"]
            cells += [f"<td{' class=n' if 1 < i < 6 else ''}>{e(c)}</td>" for i, c in enumerate(_cells(row))]
            body += "<tr>" + "".join(cells) + "</tr>"
        head = "".join(f"<th>{e(h)}</th>" for h in HEADER)
        parts.append(f"<table class=ship><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    removed = removed_sentence(doc)
    return "\n".join(parts + ([f"<p>{e(removed)}</p>"] if removed else []))
