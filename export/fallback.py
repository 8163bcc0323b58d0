"""The int8 exporters' shared search: all layers int8 first, then the most sensitive layers kept
fp32, one more per step, until a step passes the accuracy gate (export/gate.py).

A subclass says how one attempt is made (`attempt(label, exclude)`: quantize with the ops in
`exclude` left fp32, save, gate) and how an attempt's file is removed (`discard`); the ranking,
the steps, the progress lines and which failed file is kept for --force live here once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from export.quantize import Step


class LayerSearch(abc.ABC):
    layers: dict[str, str]  # quantizable node -> its layer's name (features.0), in graph order
    echo: Callable[[str], None]
    closest: Step | None = None  # the failed step with the smallest logit error (what --force writes)

    @abc.abstractmethod
    def attempt(self, label: str, exclude: tuple[str, ...]) -> Step:
        """Quantize with the `exclude`d nodes left fp32, gate the result, return the step (not yet reported)."""

    @abc.abstractmethod
    def discard(self, step: Step) -> None:
        """Remove the step's file(s)."""

    def keep_layers_fp32(self, steps: list[Step], cap: int | None) -> list[Step]:
        """After the failed `steps`: the most sensitive layers kept fp32, 1, 2, ... up to `cap`
        (None: all of them), until a step passes; the steps, these appended."""
        cap = len(self.layers) if cap is None else cap
        if cap == 0:
            return steps
        ranking = self.sensitivity()
        for count in range(1, min(cap, len(ranking)) + 1):
            kept = tuple(ranking[:count])
            label = f"{', '.join(self.layers[n] for n in kept)} in fp32"
            steps.append(self.report(self.attempt(label, kept)))
            if steps[-1].gate.passed:
                break
        return steps

    def sensitivity(self) -> list[str]:
        """Quantizable nodes, most sensitive first: the gate's logit error with that node alone in fp32."""
        self.echo(f"measuring the sensitivity of {len(self.layers)} layers ...")
        errors = {}
        for node in self.layers:
            step = self.attempt(f"{self.layers[node]} alone in fp32", (node,))
            errors[node] = step.gate.logit_error
            self.discard(step)
        ranking = sorted(errors, key=errors.get)
        self.echo(
            "  sensitivity (logit error with the layer in fp32, lower = more sensitive): "
            + ", ".join(f"{self.layers[n]} {errors[n]:.2e}" for n in ranking)
        )
        return ranking

    def report(self, step: Step) -> Step:
        """Print the step; of the failed steps' files keep only the closest (an attempt is up to 244 MB)."""
        self.echo(f"  gate [{step.label}]: {step.gate.summary()}")
        if not step.gate.passed:
            discard = step
            if self.closest is None or step.gate.logit_error < self.closest.gate.logit_error:
                self.closest, discard = step, self.closest
            if discard is not None:
                self.discard(discard)
        return step
