"""benchmarks.timing and benchmarks.roofline: percentiles, budgets, stats and the floor, on hand-made numbers."""

from __future__ import annotations

import pytest

from benchmarks import roofline
from benchmarks.timing import SPREAD_WARNING, Budget, best_seconds, summarize, throughput, time_block


def test_percentiles_on_hand_made_timings():
    # seconds in, milliseconds out: 1..10 ms and one 100 ms outlier, in one round
    stats = summarize([[t / 1e3 for t in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 100.0]]])
    assert stats.p50 == pytest.approx(6.0)
    assert stats.min == pytest.approx(1.0) and stats.max == pytest.approx(100.0)
    assert stats.p90 == pytest.approx(10.0)  # rank 9.0 of 0..10: exactly the tenth value
    assert summarize([[0.001, 0.002]]).p50 == pytest.approx(1.5)  # linear between closest ranks
    assert summarize([[0.003, 0.001, 0.002]]).p50 == pytest.approx(2.0)  # order does not matter


def test_summarize_pools_rounds_and_reports_spread_in_ms():
    # round 1 is quiet (10 ms), round 2 twice as slow (20 ms): seconds in, milliseconds out
    stats = summarize([[0.010, 0.010, 0.010], [0.020, 0.020, 0.020]])
    assert stats.n == 6
    assert stats.round_p50 == pytest.approx((10.0, 20.0))
    assert stats.p50 == pytest.approx(15.0)
    assert stats.mean == pytest.approx(15.0)
    assert stats.min == pytest.approx(10.0) and stats.max == pytest.approx(20.0)
    assert stats.std == pytest.approx(5.477, abs=1e-3)  # sample standard deviation (ddof=1)
    assert stats.spread == pytest.approx(10.0 / 15.0)
    assert stats.spread > SPREAD_WARNING
    quiet = summarize([[0.010, 0.011], [0.0105, 0.0102]])
    assert quiet.spread < SPREAD_WARNING
    assert set(quiet.to_dict()) >= {"p50", "p90", "p99", "mean", "std", "min", "max", "round_p50", "spread", "n"}


def test_summarize_needs_timings():
    with pytest.raises(ValueError):
        summarize([[], []])


def test_throughput_is_batch_over_mean_latency():
    assert throughput(32, 400.0) == pytest.approx(80.0)
    assert throughput(1, 20.0) == pytest.approx(50.0)


def test_budget_splits_over_rounds_and_needs_one_limit():
    assert Budget(iterations=10, rounds=3).block() == (4, 0.0)
    assert Budget(min_time=3.0, rounds=3).block() == (1, pytest.approx(1.0))
    with pytest.raises(ValueError, match="exactly one"):
        Budget(iterations=5, min_time=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        Budget()
    with pytest.raises(ValueError, match="rounds"):
        Budget(iterations=5, rounds=0)


class FakeClock:
    """Each step advances time by 2 s; reading the clock costs nothing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += 2.0


def test_time_block_counts_iterations_and_syncs_after_each_step():
    clock, synced = FakeClock(), []
    times = time_block(clock.step, lambda: synced.append(clock.now), min_iterations=3, clock=clock)
    assert times == [2.0, 2.0, 2.0]
    assert synced == [2.0, 4.0, 6.0]  # sync ran inside each timed call, after the step
    clock = FakeClock()
    assert len(time_block(clock.step, lambda: None, min_seconds=7.0, clock=clock)) == 4  # 8 s >= 7 s


def test_best_seconds_is_the_fastest_timed_call_after_an_untimed_one():
    clock, durations = FakeClock(), iter([50.0, 3.0, 1.0, 2.0])  # the first (untimed) call is the slow one

    def step() -> None:
        clock.now += next(durations)

    assert best_seconds(step, lambda: None, repeats=3, clock=clock) == 1.0
    assert next(durations, None) is None  # 1 untimed + 3 timed calls


# --- roofline -------------------------------------------------------------------------------

COST = roofline.ModelCost("toy", 10, 32, parameters=1_000_000, flops=2_000_000_000)


def test_floor_arithmetic_on_known_numbers():
    # 2 GFLOP per image at 100 GFLOP/s: 20 ms per image; 4 MB of fp32 weights at 10 GB/s: 0.4 ms
    one = roofline.floor(COST, 1, gflops=100.0, gbps=10.0)
    assert one.compute_ms == pytest.approx(20.0)
    assert one.memory_ms == pytest.approx(0.4)
    assert one.floor_ms == pytest.approx(20.0) and one.bound == "compute"
    assert roofline.floor(COST, 8, gflops=100.0, gbps=10.0).floor_ms == pytest.approx(160.0)
    # a slow memory makes small batches memory-bound; fp16 halves the bytes
    slow = roofline.floor(COST, 1, gflops=1000.0, gbps=0.1)
    assert slow.memory_ms == pytest.approx(40.0) and slow.bound == "memory"
    assert roofline.floor(COST, 1, gflops=1000.0, gbps=0.1, precision="fp16").memory_ms == pytest.approx(20.0)
    assert one.max_throughput == pytest.approx(50.0)
    assert roofline.floor_fraction(20.0, 25.0) == pytest.approx(0.8)


def test_layer_floor_sums_each_layers_own_bound():
    # a compute-bound conv (1.9 GFLOP, no weights to speak of) and a memory-bound linear (4 MB, 0.1 GFLOP)
    cost = roofline.ModelCost(
        "toy",
        10,
        32,
        parameters=1_000_000,
        flops=2_000_000_000,
        layers=(("conv", "Conv2d", 1_900_000_000, 0), ("fc", "Linear", 100_000_000, 1_000_000)),
    )
    f = roofline.floor(cost, 1, gflops=100.0, gbps=0.1)
    assert f.compute_ms == pytest.approx(20.0) and f.memory_ms == pytest.approx(40.0)
    assert f.floor_ms == pytest.approx(40.0)
    assert f.layer_floor_ms == pytest.approx(19.0 + 40.0)  # conv 19 ms compute, then fc 40 ms memory
    assert roofline.floor(COST, 1, gflops=100.0, gbps=10.0).layer_floor_ms is None


def test_floor_rejects_zero_rates():
    with pytest.raises(ValueError, match="positive"):
        roofline.floor(COST, 1, gflops=0.0, gbps=1.0)
    with pytest.raises(ValueError, match="positive"):
        roofline.floor_fraction(1.0, 0.0)


def test_model_cost_of_torchvision_alexnet():
    from alexnet import build_alexnet

    cost = roofline.model_cost(build_alexnet(), 224)
    assert cost.parameters == 61_100_840
    assert cost.flops == 2 * 714_188_480  # torchvision's published 0.71 GMACs
    assert cost.weight_bytes("fp32") == 4 * 61_100_840
    assert [layer[0] for layer in cost.layers][:1] == ["features.0"] and len(cost.layers) == 8
    assert sum(layer[2] for layer in cost.layers) == cost.flops
    assert sum(layer[3] for layer in cost.layers) == cost.parameters  # every weight sits in a conv or linear
