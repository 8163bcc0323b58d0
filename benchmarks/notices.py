"""The warnings a run prints under its report: noisy rows, int8 artifacts that are not all int8."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.timing import SPREAD_WARNING

if TYPE_CHECKING:
    from benchmarks.suite import Row


def row_warnings(rows: list[Row]) -> list[str]:
    return _noise_warnings(rows) + _int8_warnings(rows)


def _noise_warnings(rows: list[Row]) -> list[str]:
    noisy = [r for r in rows if r.status == "ok" and r.latency_ms["spread"] > SPREAD_WARNING]
    if not noisy:
        return []
    worst = max(noisy, key=lambda r: r.latency_ms["spread"])
    return [
        f"{len(noisy)} of {sum(r.status == 'ok' for r in rows)} rows have round medians more than "
        f"{SPREAD_WARNING:.0%} apart (worst: {worst.label} on {worst.device} at batch {worst.batch_size}, "
        f"{worst.latency_ms['spread']:.0%}); the machine is busy or throttling: compare with care, "
        f"or rerun with more --repeats / --min-time on a quiet machine"
    ]


def _int8_warnings(rows: list[Row]) -> list[str]:
    """An int8 artifact that is not all int8 (export kept layers in fp32 to pass its gate) times something else."""
    records = {r.artifact: r.info.get("quantization") for r in rows if r.precision == "int8" and r.status == "ok"}
    warnings = []
    for artifact, record in records.items():
        gate, kept = (record or {}).get("gate") or {}, (record or {}).get("fp32_layers") or []
        if kept or gate.get("passed") is False:
            verdict = "failed (written because the benchmark forces it)" if gate.get("passed") is False else "passed"
            warnings.append(
                f"int8 artifact {artifact}: export's accuracy gate {verdict}, step {gate.get('step')!r}, "
                f"{len(kept)} layer(s) kept in fp32 ({', '.join(kept) or 'none'}): its rows are not all-int8"
            )
    return warnings
