"""The floor is an upper bound on speed: its rate is the larger of the instruction-set peak (stated with
its inputs) and every library's measured matrix-multiply rate; a row faster than it gets a note, never
more than 100%. The measurements are monkeypatched: nothing here depends on this machine's speed."""

from __future__ import annotations

import pytest

from benchmarks import machine, peak, report, roofline, suite
from benchmarks.machine import Limits

AVX512 = "processor : 0\nflags : fpu sse avx fma avx2 avx512f avx512bw avx512_vnni\ncpu MHz : 3000.000\n"
AVX2 = "processor : 0\nflags : fpu sse avx fma avx2\ncpu MHz : 2000.000\n"
ARM = "processor : 0\nFeatures : fp asimd asimdhp asimddp\n"


def fake_cpufreq(root, governor="powersave", cur_khz=1200000, max_khz=3500000):
    for cpu in ("cpu0", "cpu1"):
        d = root / cpu / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(governor + "\n")
        (d / "scaling_cur_freq").write_text(f"{cur_khz}\n")
        (d / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    return root


def test_cpu_frequency_reads_cpufreq_and_cpuinfo(tmp_path):
    freq = peak.cpu_frequency(fake_cpufreq(tmp_path), AVX2)
    assert freq == {"governor": "powersave", "cur_mhz": 1200.0, "max_mhz": 3500.0, "cpuinfo_mhz": 2000.0}
    assert peak.cpu_frequency(tmp_path / "absent", "") == dict.fromkeys(freq)  # nothing exposed: None each


@pytest.mark.parametrize(
    "cpuinfo, arch, fp32, int8, fp16",
    [
        (AVX512, "x86_64", 1 * 3.0 * 2 * 16 * 2, 4 * 192.0, 192.0),  # VNNI: 4x; no AVX512_FP16: fp32's rate
        (AVX2, "x86_64", 1 * 2.0 * 2 * 8 * 2, 2 * 64.0, 64.0),  # VPMADDUBSW+VPMADDWD: 2x
    ],
)
def test_peak_is_cores_x_clock_x_fma_width(tmp_path, cpuinfo, arch, fp32, int8, fp16):
    p = peak.cpu_peak(threads=1, cpuinfo=cpuinfo, machine=arch, root=tmp_path)
    assert p.rates["fp32"] == pytest.approx(fp32)
    assert p.rates["int8"] == pytest.approx(int8) and p.rates["fp16"] == pytest.approx(fp16)
    assert p.cores == 1 and p.frequency_source == "/proc/cpuinfo cpu MHz"
    assert "1 cores x" in p.formula("fp32") and "GHz" in p.formula("fp32")  # the inputs are stated
    assert set(p.to_dict()["formulas"]) == {"fp32", "int8", "bf16", "fp16"}


def test_peak_uses_the_max_clock_and_native_fp16(tmp_path):
    p = peak.cpu_peak(threads=1, cpuinfo=ARM, machine="aarch64", root=fake_cpufreq(tmp_path))
    assert p.ghz == 3.5 and p.frequency_source.startswith("cpufreq")  # the maximum, not the throttled 1.2
    assert p.rates["fp32"] == pytest.approx(3.5 * 4 * 4 * 2) and p.rates["fp16"] == pytest.approx(2 * p.rates["fp32"])
    assert peak.cpu_peak(threads=1, cpuinfo=ARM, machine="aarch64", root=tmp_path / "absent") is None  # no clock


@pytest.fixture
def measured(monkeypatch):
    """measure_limits with every library's rate made up; OpenVINO's the fastest, far above any peak."""
    rates = {"torch": 90.0, "numpy": 100.0, "onnxruntime": 120.0, "openvino": 50_000.0}
    monkeypatch.setattr(machine, "measure_matmul", lambda *a, **k: {64: rates["torch"]})
    monkeypatch.setattr(machine, "measure_matmul_numpy", lambda *a, **k: {64: rates["numpy"]})
    monkeypatch.setattr(machine, "measure_matmul_onnxruntime", lambda *a, **k: {64: rates["onnxruntime"]})
    monkeypatch.setattr(machine, "measure_matmul_openvino", lambda *a, **k: {64: rates["openvino"]})
    monkeypatch.setattr(machine, "measure_bandwidth", lambda *a, **k: {"copy": 10.0, "read": 20.0})
    return rates


@pytest.mark.parametrize("cpuinfo", [AVX512, AVX2, ""])
def test_the_floor_rate_is_never_below_a_measured_rate(measured, tmp_path, cpuinfo):
    best = machine.best_limits([machine.measure_limits("cpu", ("fp32",), sizes=(64,), mbytes=8, repeats=1)])
    p = peak.cpu_peak(threads=2, cpuinfo=cpuinfo, machine="x86_64", root=tmp_path)
    limits = peak.with_peak(best, p)
    assert limits.gflops("fp32") >= max(measured.values())
    assert limits.details["measured_gflops"]["fp32"] == max(measured.values())
    assert "measured (openvino 64)" in limits.notes.get("fp32 rate", "measured (openvino 64)")
    cost = roofline.ModelCost("x", 10, 224, parameters=1000, flops=10**9)
    floor = roofline.floor(cost, 32, gflops=limits.gflops("fp32"), gbps=limits.bandwidth_gbps)
    for rate in measured.values():  # no library's measured speed can run below the floor
        assert floor.compute_ms <= 32 * cost.flops / (rate * 1e6)


def test_the_peak_raises_a_low_measured_rate_and_says_so(measured, tmp_path):
    measured.update(openvino=1.0)
    best = machine.best_limits([machine.measure_limits("cpu", ("fp32",), sizes=(64,), mbytes=8, repeats=1)])
    p = peak.cpu_peak(threads=1, cpuinfo=AVX512, machine="x86_64", root=tmp_path)
    limits = peak.with_peak(best, p)
    assert limits.gflops("fp32") == pytest.approx(p.rates["fp32"]) and p.rates["fp32"] > 120.0
    assert "instruction-set peak" in limits.notes["fp32 rate"] and "3.00 GHz" in limits.notes["fp32 rate"]


def test_a_row_faster_than_its_floor_gets_a_note_not_more_than_100_percent():
    cost = roofline.ModelCost("x", 10, 224, parameters=1000, flops=10**9)
    row = suite.Row("openvino", "fp32", "cpu", 32, latency_ms={"p50": 100.0})
    suite._add_comparisons([row], cost, {"cpu": Limits("cpu", {"fp32": 400.0}, 1000.0)})  # floor 80 ms
    assert row.floor_fraction == pytest.approx(0.8) and row.floor_note is None
    suite._add_comparisons([row], cost, {"cpu": Limits("cpu", {"fp32": 200.0}, 1000.0)})  # floor 160 ms
    assert row.bound == "compute" and "fewer operations" in row.floor_note
    assert report.of_floor(row.to_dict()) == report.BEATS_FLOOR
    assert report.of_floor({"floor_fraction": 0.8}) == "80%"
    assert "cache" in peak.floor_note(1.2, "memory")


def test_cpu_fp16_is_not_timed_in_torch_and_takes_the_fp32_rate_or_its_peak(measured, monkeypatch, tmp_path):
    measured.update(numpy=5.0, onnxruntime=6.0, openvino=4.0)  # far under any peak below
    timed = []
    monkeypatch.setattr(
        machine, "measure_matmul", lambda device, precision, *a, **k: timed.append(precision) or {64: 7.0}
    )
    limits = machine.measure_limits("cpu", ("fp32", "fp16"), sizes=(64,), mbytes=8, repeats=1)
    assert timed == ["fp32"]  # torch's emulated fp16 matmul takes minutes on a CPU
    assert limits.gflops("fp16") == limits.gflops("fp32") == 7.0
    fp16_cpu = AVX512.replace("avx512_vnni", "avx512_vnni avx512_fp16")
    p = peak.cpu_peak(threads=2, cpuinfo=fp16_cpu, machine="x86_64", root=tmp_path)
    raised = peak.with_peak(limits, p)
    assert p.rates["fp16"] == pytest.approx(2 * p.rates["fp32"])  # native fp16: twice the lanes
    assert raised.gflops("fp16") == pytest.approx(p.rates["fp16"]) and raised.gflops("fp32") == pytest.approx(
        p.rates["fp32"]
    )
