"""One benchmark run of a model, as `alexnet-bench` and `alexnet-report` both make it: the machine
described (at the start, and its load and clock again at the end), the model's cost, the suite,
and the settings as the JSON keeps them. The pieces of `benchmarks.report.build_document`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.artifacts import Artifacts, Source
from benchmarks.suite import Settings


def run_benchmark(
    source: Source, workdir: Path, settings: Settings, say: Callable[[str], None], artifacts: Artifacts | None = None
) -> dict[str, Any]:
    """Run the suite on `source` (exporting into `workdir`, or reusing `artifacts`' exports): the report's pieces."""
    from benchmarks import roofline
    from benchmarks.machine import describe_machine
    from benchmarks.peak import cpu_frequency
    from benchmarks.suite import run_suite

    machine = describe_machine(settings.threads)
    cost = roofline.model_cost(source.build_model(), source.image_size)
    result = run_suite(artifacts or Artifacts(source, workdir), cost, settings, progress=say)
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine["cpu_frequency_end"] = cpu_frequency()
    return {
        "result": result,
        "machine": machine,
        "model": {**source.describe(), **cost.to_dict()},
        "settings": settings_record(settings),
    }


def settings_record(settings: Settings) -> dict[str, Any]:
    """The settings as the JSON keeps them."""
    return {
        "backends": list(settings.backends),
        "devices": list(settings.devices),
        "batch_sizes": list(settings.batch_sizes),
        "precisions": list(settings.precisions or ()),
        "threads": settings.threads,
        "warmup": settings.warmup,
        "quick": not settings.remeasure,
        "clock": settings.clock,
        "isolation": "one spawned worker process per backend, variant and device",
        "timeout_s": settings.timeout_s,
        "build_timeout_s": settings.build_timeout_s,
        **asdict(settings.budget),
    }
