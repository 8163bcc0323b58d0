"""Which artifact to deploy, per target device: the report's recommendations.

Works on the report's entry dicts (`benchmarks.deploy_report.Entry.to_dict`), so that it can be
checked on hand-made rows. An entry is a candidate on a device when it is *within the accuracy
gate* and ran there:

- its status is ok and its validation passed (the exporter's tolerances);
- its top-1 agreement with the fp32 checkpoint is at least 1 - max_agreement_loss;
- its top-1 accuracy is at most max_accuracy_drop below the checkpoint's;

the same two thresholds, with the same defaults, as the int8 exporter's gate (export.quantize).
Among candidates: the lowest p50 latency at the smallest batch size timed, the smallest file,
and the highest images/s at any batch size; each with the numbers that justify it and the runner-up.
"""

from __future__ import annotations

from typing import Any

GOALS = ("lowest latency", "smallest", "highest throughput")


def gate_thresholds() -> dict[str, float]:
    """The int8 exporter's default gate (one source: export.quantize.QuantizeOptions)."""
    from export.quantize import QuantizeOptions

    options = QuantizeOptions()
    return {"max_agreement_loss": options.max_agreement_loss, "max_accuracy_drop": options.max_accuracy_drop}


def gate_verdict(entry: dict[str, Any], reference: dict[str, Any] | None, gate: dict[str, float]) -> str | None:
    """None when `entry` is within the accuracy gate; else why not, in words."""
    if entry["status"] != "ok":
        return f"status {entry['status']}"
    if not entry.get("check_passed"):
        return "validation did not pass"
    agreement = entry.get("agreement")
    if agreement is None or agreement < 1 - gate["max_agreement_loss"] - 1e-12:
        return "agreement with fp32 unknown" if agreement is None else f"agreement {agreement:.2%} below the gate"
    top1, base = entry.get("top1"), (reference or {}).get("top1")
    if top1 is None or base is None:
        return "top-1 unknown"
    if base - top1 > gate["max_accuracy_drop"] + 1e-12:
        return f"top-1 {top1:.2%} is more than {gate['max_accuracy_drop']:.0%} below fp32's {base:.2%}"
    return None


def _batches(entry: dict[str, Any], device: str) -> list[dict[str, Any]]:
    timing = entry.get("devices", {}).get(device) or {}
    return timing.get("batches") or []


def _latency(entry: dict[str, Any], device: str) -> tuple[float, int]:
    first = min(_batches(entry, device), key=lambda b: b["batch_size"])
    return first["p50_ms"], first["batch_size"]


def _throughput(entry: dict[str, Any], device: str) -> tuple[float, int]:
    best = max(_batches(entry, device), key=lambda b: b["throughput_ips"])
    return best["throughput_ips"], best["batch_size"]


def _accuracy_text(entry: dict[str, Any], reference: dict[str, Any] | None) -> str:
    base = (reference or {}).get("top1")
    text = f"top-1 {entry['top1']:.2%}" + (f" (fp32 checkpoint {base:.2%})" if base is not None else "")
    return text + f", agreement with fp32 {entry['agreement']:.2%}"


def recommend(entries: list[dict[str, Any]], device: str, gate: dict[str, float]) -> list[dict[str, Any]]:
    """One recommendation per goal on `device`: {device, goal, label, value, why} (label None: no candidate)."""
    reference = next((e for e in entries if e["format"] == "checkpoint"), None)
    ran = [e for e in entries if _batches(e, device)]
    candidates = [e for e in ran if gate_verdict(e, reference, gate) is None]
    if not candidates:
        why = f"no artifact within the accuracy gate was timed on {device}"
        return [{"device": device, "goal": goal, "label": None, "value": None, "why": why} for goal in GOALS]
    out = []
    for goal in GOALS:
        if goal == "lowest latency":
            ranked = sorted(candidates, key=lambda e: _latency(e, device)[0])
            value, n = _latency(ranked[0], device)
            text = f"p50 {value:.2f} ms at batch {n}"
            runner_up = ranked[1:] and f"next: {ranked[1]['label']} {_latency(ranked[1], device)[0]:.2f} ms"
        elif goal == "smallest":
            ranked = sorted(candidates, key=lambda e: e["size_bytes"] or float("inf"))
            value = ranked[0]["size_bytes"]
            text = f"{value / 1e6:.1f} MB" if value else "size unknown"
            runner_up = ranked[1:] and f"next: {ranked[1]['label']} {(ranked[1]['size_bytes'] or 0) / 1e6:.1f} MB"
        else:
            ranked = sorted(candidates, key=lambda e: -_throughput(e, device)[0])
            value, n = _throughput(ranked[0], device)
            text = f"{value:.1f} images/s at batch {n}"
            runner_up = ranked[1:] and f"next: {ranked[1]['label']} {_throughput(ranked[1], device)[0]:.1f} images/s"
        why = f"{text}; {_accuracy_text(ranked[0], reference)}" + (f"; {runner_up}" if runner_up else "")
        out.append({"device": device, "goal": goal, "label": ranked[0]["label"], "value": value, "why": why})
    return out


def excluded(entries: list[dict[str, Any]], gate: dict[str, float]) -> list[tuple[str, str]]:
    """(label, why) of each entry left out of the recommendations by the gate."""
    reference = next((e for e in entries if e["format"] == "checkpoint"), None)
    verdicts = [(e["label"], gate_verdict(e, reference, gate)) for e in entries]
    return [(label, why) for label, why in verdicts if why]
