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

from collections.abc import Callable
from typing import Any

GOALS = ("lowest latency", "smallest", "highest throughput")


def gate_thresholds() -> dict[str, float]:
    """The int8 exporter's default gate (one source: export.quantize.QuantizeOptions)."""
    from export.quantize import QuantizeOptions

    options = QuantizeOptions()
    return {"max_agreement_loss": options.max_agreement_loss, "max_accuracy_drop": options.max_accuracy_drop}


def gate_verdict(entry: dict[str, Any], reference: dict[str, Any] | None, gate: dict[str, float]) -> str | None:
    """None when `entry` is within the accuracy gate; else why not, as a sentence that says who decided:
    the step that skipped or failed it (its own reason), the exporter's validation, or the accuracy gate."""
    if entry["status"] != "ok":
        return entry.get("reason") or f"status {entry['status']}"
    if not entry.get("check_passed"):
        return "the validation against the checkpoint did not pass (the exporter's tolerances)"
    agreement = entry.get("agreement")
    if agreement is None or agreement < 1 - gate["max_agreement_loss"] - 1e-12:
        if agreement is None:
            return "its agreement with the fp32 checkpoint is unknown"
        return f"the accuracy gate refused it: agreement {agreement:.2%} is below {1 - gate['max_agreement_loss']:.0%}"
    top1, base = entry.get("top1"), (reference or {}).get("top1")
    if top1 is None or base is None:
        return "its top-1 is unknown"
    if base - top1 > gate["max_accuracy_drop"] + 1e-12:
        return (
            f"the accuracy gate refused it: top-1 {top1:.2%} is more than {gate['max_accuracy_drop']:.0%} "
            f"below fp32's {base:.2%}"
        )
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


# goal -> (the figure ranked, higher is better, how the figure reads, what winning it means)
_GOALS: dict[str, tuple[Callable[[dict[str, Any], str], tuple[float, int | None]], bool, str, str]] = {
    "lowest latency": (_latency, False, "p50 {:.2f} ms at batch {}", "the lowest p50 latency"),
    "smallest": (lambda e, _d: (e["size_bytes"] or float("inf"), None), False, "{:.1f} MB", "the smallest file"),
    "highest throughput": (_throughput, True, "{:.1f} images/s at batch {}", "the most images/s"),
}


def _figure(goal: str, entry: dict[str, Any], device: str) -> str:
    value, n = _GOALS[goal][0](entry, device)
    if value == float("inf"):
        return "size unknown"
    return _GOALS[goal][2].format(value / 1e6 if goal == "smallest" else value, n)


def recommend(entries: list[dict[str, Any]], device: str, gate: dict[str, float]) -> list[dict[str, Any]]:
    """One recommendation per goal on `device`: {device, goal, label, value, why, reason} (label None: no
    candidate); `why` has the numbers and the runner-up, `reason` is the one line of why this one wins."""
    reference = next((e for e in entries if e["format"] == "checkpoint"), None)
    ran = [e for e in entries if _batches(e, device)]
    candidates = [e for e in ran if gate_verdict(e, reference, gate) is None]
    if not candidates:
        why = f"no artifact within the accuracy gate was timed on {device}"
        return [
            {"device": device, "goal": goal, "label": None, "value": None, "why": why, "reason": why} for goal in GOALS
        ]
    out = []
    for goal in GOALS:
        key, higher, _, wins = _GOALS[goal]
        ranked = sorted(candidates, key=lambda e: key(e, device)[0], reverse=higher)
        best = ranked[0]
        runner_up = f"next: {ranked[1]['label']} {_figure(goal, ranked[1], device)}" if ranked[1:] else ""
        why = "; ".join(filter(None, (_figure(goal, best, device), _accuracy_text(best, reference), runner_up)))
        among = f"within the accuracy gate timed on {device}"
        reason = (
            f"{wins} of the {len(ranked)} artifacts {among}; {runner_up}"
            if ranked[1:]
            else f"the only artifact {among}"
        )
        value = best["size_bytes"] if goal == "smallest" else key(best, device)[0]
        out.append(
            {"device": device, "goal": goal, "label": best["label"], "value": value, "why": why, "reason": reason}
        )
    return out


def excluded(entries: list[dict[str, Any]], gate: dict[str, float], device: str) -> list[dict[str, str]]:
    """{device, label, why} of each artifact that cannot be recommended on `device`, `why` saying who left it
    out and why: the step that skipped or failed it, the validation, the accuracy gate, or the benchmark
    (not timed there)."""
    reference = next((e for e in entries if e["format"] == "checkpoint"), None)
    out = []
    for e in entries:
        why = gate_verdict(e, reference, gate)
        if why is None and not _batches(e, device):
            timing = e.get("devices", {}).get(device) or {}
            why = timing.get("reason") or f"not timed on {device}"  # the benchmark's own sentence (who and why)
        if why:
            out.append({"device": device, "label": e["label"], "why": why})
    return out
