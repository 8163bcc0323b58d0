"""Benchmark outputs: JSON (every figure), Markdown (a table to read), a plot (matplotlib Agg).

The JSON document is the source of the other two, so a saved JSON can be re-rendered.
Schema (``"schema": "alexnet-bench/1"``): command, note, settings, machine, model, limits
(per device: measured rates and the floor per batch size), rows, warnings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.e2e import e2e_table
from benchmarks.machine import EDGE_LIBRARIES
from benchmarks.markdown import md_code, md_text
from benchmarks.suite import Result
from runtime import outputs

SCHEMA = "alexnet-bench/1"


def build_document(
    result: Result,
    *,
    command: str,
    machine: dict[str, Any],
    model: dict[str, Any],
    settings: dict[str, Any],
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": command,
        "note": note,
        "settings": settings,
        "machine": machine,
        "model": model,
        "limits": {
            device: {**lim.to_dict(), "floors": [f.to_dict() for f in result.floors[device]]}
            for device, lim in result.limits.items()
        },
        "rows": [row.to_dict() for row in result.rows],
        "warnings": list(result.warnings),
    }


def write_json(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Strict JSON (no NaN) to `path`, or to stdout for ``-``."""
    return outputs.write_text(path, outputs.dumps_json(doc, indent=2) + "\n", what="--json")


def _f(value: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "" if value is None else f"{value:{fmt}}{suffix}"


def machine_line(m: dict[str, Any]) -> str:
    libs = m.get("libraries", {})
    names = ("torch", "onnxruntime", "onnxruntime-gpu", "openvino", "nncf", "coremltools", *EDGE_LIBRARIES, "numpy")
    versions = ", ".join(f"{k} {libs[k]}" for k in names if k in libs)
    gpu = f"; GPU {m['cuda']['device']} (CUDA {m['cuda']['cuda_version']})" if m.get("cuda") else ""
    load = m.get("load_average")
    load_text = f"; load average at start {load[0]:.2f}" if load else ""
    end = m.get("load_average_end")
    load_text += f", at end {end[0]:.2f}" if load and end else ""
    freq = m.get("cpu_frequency") or {}
    mhz = freq.get("cur_mhz") or freq.get("cpuinfo_mhz")
    load_text += f"; clock {mhz:.0f} MHz" if mhz else ""
    load_text += f" (max {freq['max_mhz']:.0f})" if mhz and freq.get("max_mhz") else ""
    load_text += f", governor {freq['governor']}" if freq.get("governor") else ""
    memory = f", {m['memory_gib']:.0f} GiB RAM" if m.get("memory_gib") else ""
    isa = f" ({m['instruction_set']})" if m.get("instruction_set") else ""  # absent in results older than it
    return (
        f"{m['cpu']}{isa}, {m['physical_cores']} cores / {m['logical_cpus']} threads{memory}{gpu}; "
        f"{m['os']}; Python {m['python']}; {versions}; benchmark threads {m['threads']}{load_text}"
    )


def model_line(model: dict[str, Any], code: Callable[[str], str] = md_code) -> str:
    """One line on the model; `code` formats names (a Markdown code span, or HTML's <code>)."""
    weights = model["weight_bytes"]["fp32"] / 1e6
    source = f"checkpoint {code(model['checkpoint'])}" if model.get("checkpoint") else "freshly initialized weights"
    return (
        f"AlexNet {code(model['variant'])}, {model['num_classes']} classes, {model['image_size']}x{model['image_size']} "
        f"input, {model['parameters'] / 1e6:.1f} M parameters ({weights:.1f} MB fp32), "
        f"{model['flops_per_image'] / 1e9:.3f} GFLOP per image; {source}"
    )


def _limits_table(device: str, lim: dict[str, Any]) -> list[str]:
    rates = ", ".join(f"{p} {g:.1f} {'GOP/s' if p == 'int8' else 'GFLOP/s'}" for p, g in lim["matmul_gflops"].items())
    measured = lim.get("details", {}).get("measured_gflops")
    if measured and measured != lim["matmul_gflops"]:
        rates += " (measured: " + ", ".join(f"{p} {g:.1f}" for p, g in measured.items()) + ")"
    notes = [f"- {note}" for note in lim.get("notes", {}).values()]
    lines = [
        f"### Physical limit: {device}",
        "",
        f"Matrix-multiply rate (the larger of the instruction-set peak and the best library measured): {rates}; "
        f"memory bandwidth: {lim['bandwidth_gbps']:.1f} GB/s.",
        "",
        *(notes + [""] if notes else []),
        "| precision | batch | compute ms | memory ms | floor ms | bound by | max images/s | layer by layer ms |",
        "|---|--:|--:|--:|--:|---|--:|--:|",
    ]
    for f in lim["floors"]:
        lines.append(
            f"| {f['precision']} | {f['batch_size']} | {f['compute_ms']:.2f} | {f['memory_ms']:.2f} | "
            f"{f['floor_ms']:.2f} | {f['bound']} | {f['max_throughput']:.1f} | {_f(f.get('layer_floor_ms'))} |"
        )
    return lines + [""]


BEATS_FLOOR = "beats floor*"  # a row faster than its floor: the footnote says why; never "more than 100%"


def of_floor(r: dict[str, Any]) -> str:
    fraction = r.get("floor_fraction")
    return BEATS_FLOOR if fraction is not None and fraction > 1.0 else _f(fraction and 100 * fraction, ".0f", "%")


HEADER = (
    "| backend | variant | batch | p50 ms | p90 ms | p99 ms | min ms | mean ± std ms | spread | images/s | "
    "speed-up | of floor | size MB | rel. diff |"
)
COLUMNS = HEADER.count("|") - 1


def _result_line(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        batch = r["batch_size"] if r["batch_size"] is not None else "all"
        return f"| {r['backend']} | {r['variant']} | {batch} | {r['status']}: {r['reason']} |" + " |" * (COLUMNS - 4)
    s = r["latency_ms"]
    size = _f(r["artifact_bytes"] / 1e6 if r["artifact_bytes"] else None, ".1f")
    diff = _f(r["max_rel_diff"], ".1e")
    return (
        f"| {r['backend']} | {r['variant']} | {r['batch_size']} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['min']:.2f} | "
        f"{s['mean']:.2f} ± {s['std']:.2f} | {s['spread']:.0%} | {r['throughput_ips']:.1f} | "
        f"{_f(r['speedup'], '.2f', 'x')} | {of_floor(r)} | "
        f"{size} | {diff} |"
    )


def results_table(doc: dict[str, Any], device: str) -> list[str]:
    rows = [r for r in doc["rows"] if r["device"] == device]
    ok = sorted(
        (r for r in rows if r["status"] == "ok" and "e2e" not in r["variant"].split()),  # e2e: their own table
        key=lambda r: (r["batch_size"], r["latency_ms"]["p50"]),
    )
    lines = [HEADER, "|---|---|" + "--:|" * (COLUMNS - 2)]
    lines += [_result_line(r) for r in ok]
    lines += [_result_line(r) for r in rows if r["status"] != "ok"]
    return lines


def _fp32_bytes(doc: dict[str, Any], row: dict[str, Any]) -> int | None:
    """The artifact size of the same backend's fp32 row: what an int8 artifact shrinks."""
    same = (row["device"], row["backend"], "fp32")
    sizes = [r["artifact_bytes"] for r in doc["rows"] if (r["device"], r["backend"], r["variant"]) == same]
    return next((b for b in sizes if b), None)


def fastest_table(doc: dict[str, Any], device: str, precision: str = "fp32") -> list[str]:
    """Per batch size: the fastest `precision` row other than eager, against eager and against the floor
    (for a precision other than fp32, also its artifact's size against the same backend's fp32 one)."""
    ok = [
        r
        for r in doc["rows"]
        if r["device"] == device
        and r["status"] == "ok"
        and r["precision"] == precision
        and r["backend"] != "pytorch"
        and "e2e" not in r["variant"].split()  # the model alone: e2e rows have their own table
    ]
    sized = precision != "fp32"
    lines = [
        f"| batch | fastest {precision} backend | p50 ms | speed-up vs eager | of floor |"
        + (" size vs fp32 |" if sized else ""),
        "|--:|---|--:|--:|--:|" + ("--:|" if sized else ""),
    ]
    for n in sorted({r["batch_size"] for r in ok}):
        best = min((r for r in ok if r["batch_size"] == n), key=lambda r: r["latency_ms"]["p50"])
        fp32_bytes = _fp32_bytes(doc, best) if sized else None
        ratio = best["artifact_bytes"] / fp32_bytes if fp32_bytes and best["artifact_bytes"] else None
        lines.append(
            f"| {n} | {best['backend']} {best['variant']} | {best['latency_ms']['p50']:.2f} | "
            f"{_f(best['speedup'], '.2f', 'x')} | {of_floor(best)} |"
            + (f" {_f(ratio and 100 * ratio, '.0f', '%')} |" if sized else "")
        )
    return lines if len(lines) > 2 else []


E2E_NOTE = (
    "Each e2e step takes the next batch of predictions from `Predictor.iter_predict` on a stream of JPEG files, "
    "as `alexnet-run` predicts a folder: its worker threads read, decode and preprocess the next batch while "
    "the model runs this one; each timed block starts the stream cold. model alone: the images/s of the model "
    "calls in the same steps; outside the model: the rest of the time (reading, decoding, preprocessing, top-k, "
    "waiting for the decoders). e2e rows have no rel. diff: their input is the files, not the random batch."
)


def render_markdown(doc: dict[str, Any]) -> str:
    lines = ["# AlexNet inference benchmark", "", f"Command: {md_code(doc['command'])}", ""]
    if doc.get("note"):
        lines += [f"Conditions: {md_text(doc['note'])}", ""]
    clock = doc["settings"].get("clock", "wall")
    clock_text = (
        "the process's CPU time (one thread; time spent descheduled is not counted)" if clock == "cpu" else "wall time"
    )
    lines += [
        f"- Date: {doc['machine']['date']}",
        f"- Machine: {md_text(machine_line(doc['machine']))}",
        f"- Model: {model_line(doc['model'])}",
        f"- Clock: {clock_text}",
        "",
    ]
    devices = list(dict.fromkeys(r["device"] for r in doc["rows"]))
    for device in devices:
        lines += [f"## {device}", ""]
        if device in doc["limits"]:
            lines += _limits_table(device, doc["limits"][device])
        lines += ["### Results", ""] + results_table(doc, device) + [""]
        end_to_end = e2e_table(doc, device)
        if end_to_end:
            lines += ["### End to end (image files -> decode -> preprocess -> predict)", ""] + end_to_end + [""]
            lines += [E2E_NOTE, ""]
        for precision in ("fp32", "int8"):
            fastest = fastest_table(doc, device, precision)
            if fastest:
                lines += [f"### Fastest deployed backend, {precision}", ""] + fastest + [""]
    lines += [
        "p50/p90/p99: latency percentiles over all timed iterations; spread: how far apart the rounds' "
        "medians were; images/s: batch / mean latency; speed-up: PyTorch eager fp32 p50 / this p50 (same "
        "device and batch); of floor: the physical floor / this p50; rel. diff: max |logits - eager "
        "logits| / max |eager logits|. int8 rows: the floor reads 1 byte per weight and computes at the int8 rate "
        "(GOP/s) above; size vs fp32: the int8 artifact against the same backend's fp32 one.",
        "",
    ]
    if any((r.get("floor_fraction") or 0) > 1.0 for r in doc["rows"]):
        notes = sorted({r["floor_note"] for r in doc["rows"] if r.get("floor_note")})
        lines += [f"\\* {'; '.join(notes) or 'faster than the floor'}.", ""]
    if doc["warnings"]:
        lines += ["**Warnings**", ""] + [f"- {md_text(w)}" for w in doc["warnings"]] + [""]
    return "\n".join(lines)


def write_markdown(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    return outputs.write_text(path, render_markdown(doc), what="--markdown")


def plot_format(path: str | os.PathLike) -> str:
    """The image format `write_plot` saves `path` in (its suffix; png without one); ValueError if
    matplotlib cannot write it."""
    from matplotlib.figure import Figure

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    supported = Figure().canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"matplotlib cannot write .{fmt} plots; use one of {', '.join('.' + s for s in sorted(supported))}"
        )
    return fmt


def write_plot(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Latency (p50) and throughput against batch size, one line per backend/variant/device, floor dashed."""
    fmt = plot_format(path)
    from matplotlib.figure import Figure  # a Figure object, never pyplot: no global backend or figure state

    fig = Figure(figsize=(12, 4.8))
    lat, thr = fig.subplots(1, 2)
    series: dict[str, list[dict[str, Any]]] = {}
    for r in doc["rows"]:
        if r["status"] == "ok":
            series.setdefault(f"{r['backend']} {r['variant']} ({r['device']})", []).append(r)
    for label, rows in series.items():
        rows.sort(key=lambda r: r["batch_size"])
        x = [r["batch_size"] for r in rows]
        lat.plot(x, [r["latency_ms"]["p50"] for r in rows], marker="o", label=label)
        thr.plot(x, [r["throughput_ips"] for r in rows], marker="o", label=label)
    for device, lim in doc["limits"].items():
        for precision, style in (("fp32", "k--"), ("int8", "k:")):
            floors = sorted((f for f in lim["floors"] if f["precision"] == precision), key=lambda f: f["batch_size"])
            if floors:
                x, label = [f["batch_size"] for f in floors], f"floor {precision} ({device})"
                lat.plot(x, [f["floor_ms"] for f in floors], style, label=label)
                thr.plot(x, [f["max_throughput"] for f in floors], style, label=label)
    sizes = sorted({r["batch_size"] for r in doc["rows"] if r["status"] == "ok"})
    for ax, title, unit in ((lat, "latency (p50)", "ms per batch"), (thr, "throughput", "images / s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    thr.legend(fontsize=7, loc="best")
    fig.suptitle(f"AlexNet {doc['model']['variant']} {doc['model']['image_size']}px on {doc['machine']['cpu']}")
    fig.tight_layout()
    path = Path(path)
    outputs.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt), what="--plot")
    return path
