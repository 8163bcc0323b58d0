"""The physical floor: no backend can run AlexNet faster than the machine can do its
arithmetic, nor faster than it can read its weights.

    compute_ms = batch * FLOPs per image / matmul rate
    memory_ms  = weight bytes / memory bandwidth         (weights are read once per batch)
    floor_ms   = max(compute_ms, memory_ms)

and, beside it, `layer_floor_ms`: the same bound taken layer by layer and summed. Engines run
AlexNet's layers one after the other (the weight reads of the memory-bound classifier do not
overlap the compute-bound convolutions), so this tighter figure is what they can approach.

FLOPs count 2 per multiply-accumulate of the convolutions and linear layers (what a matmul
rate bounds); ReLU, pooling and LRN are left out, and so are activation bytes, so the
floor is a true lower bound. A row's `floor_fraction` = floor_ms / its p50: 1.0 means the
backend runs at the machine's measured limit. At batch 1 the fp32 weights (244 MB for the
torchvision variant) make AlexNet memory-bound on most CPUs; large batches are compute-bound.

int8 floors: weight bytes = parameters x 1 (a quarter of fp32; the few fp32/int32 biases and
scales are left out, so the bound stays a lower one), compute at the int8 rate of
`benchmarks.int8` (integer operations per second, 2 per multiply-accumulate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.metadata import BYTES_PER_WEIGHT


@dataclass(frozen=True)
class ModelCost:
    """What one image costs: FLOPs and the weights that must be read."""

    variant: str
    num_classes: int
    image_size: int
    parameters: int
    flops: int  # per image
    layers: tuple[tuple[str, str, int, int], ...] = ()  # (name, kind, FLOPs per image, parameters), conv/linear

    def weight_bytes(self, precision: str = "fp32") -> int:
        return self.parameters * BYTES_PER_WEIGHT[precision]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "parameters": self.parameters,
            "flops_per_image": self.flops,
            "weight_bytes": {p: self.weight_bytes(p) for p in BYTES_PER_WEIGHT},
            "layers": [{"name": n, "kind": k, "flops": f, "parameters": w} for n, k, f, w in self.layers],
        }


def model_cost(model: Any, image_size: int | None = None) -> ModelCost:
    """FLOPs and parameters of an `alexnet.AlexNet` at `image_size` (one forward of a zero image)."""
    from alexnet.summary import summarize

    summary = summarize(model, image_size)
    layers = tuple((r.name, r.kind, 2 * r.macs, r.parameters) for r in summary.rows if r.macs)
    return ModelCost(
        summary.variant,
        summary.num_classes,
        summary.image_size,
        summary.total_parameters,
        2 * summary.total_macs,
        layers,
    )


@dataclass(frozen=True)
class Floor:
    batch_size: int
    precision: str
    compute_ms: float
    memory_ms: float
    layer_floor_ms: float | None = None  # sum over layers of max(compute, memory); None without layers

    @property
    def floor_ms(self) -> float:
        return max(self.compute_ms, self.memory_ms)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    @property
    def max_throughput(self) -> float:
        """Images per second at the floor."""
        return self.batch_size / (self.floor_ms / 1e3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "precision": self.precision,
            "compute_ms": self.compute_ms,
            "memory_ms": self.memory_ms,
            "floor_ms": self.floor_ms,
            "bound": self.bound,
            "layer_floor_ms": self.layer_floor_ms,
            "max_throughput": self.max_throughput,
        }


def floor(cost: ModelCost, batch_size: int, *, gflops: float, gbps: float, precision: str = "fp32") -> Floor:
    """The floor for one batch of `batch_size` at a matmul rate of `gflops` and bandwidth of `gbps`."""
    if gflops <= 0 or gbps <= 0:
        raise ValueError(f"rates must be positive, got {gflops} GFLOP/s and {gbps} GB/s")

    def ms(flops: float, params: int) -> tuple[float, float]:
        return batch_size * flops / (gflops * 1e6), params * BYTES_PER_WEIGHT[precision] / (gbps * 1e6)

    compute_ms, memory_ms = ms(cost.flops, cost.parameters)
    layer_ms = sum(max(ms(f, w)) for _, _, f, w in cost.layers) if cost.layers else None
    return Floor(batch_size, precision, compute_ms, memory_ms, layer_ms)


def floor_fraction(floor_ms: float, measured_ms: float) -> float:
    """How close a measurement is to the floor: 1.0 at the floor, 0.5 at twice it."""
    if measured_ms <= 0:
        raise ValueError(f"a measured latency must be positive, got {measured_ms}")
    return floor_ms / measured_ms
