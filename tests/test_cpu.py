"""int8 target detection from /proc/cpuinfo lines of each CPU family."""

from __future__ import annotations

import pytest

from runtime.cpu import DESCRIPTIONS, TARGETS, detect_cpu, parse_cpuinfo_flags

pytestmark = pytest.mark.runtime

# Abridged first-processor blocks of real machines.
EPYC_ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr pae sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
"""
SKYLAKE_SP = "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl\n"
CASCADE_LAKE = "flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni\n"
ALDER_LAKE = "flags\t\t: fpu sse sse2 avx avx2 avx_vnni\n"
SANDY_BRIDGE = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n"
GRAVITON = (
    "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"
)


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "target"),
    [
        (EPYC_ZEN2, "x86_64", "avx2"),
        (SKYLAKE_SP, "x86_64", "avx512"),
        (CASCADE_LAKE, "x86_64", "vnni"),
        (ALDER_LAKE, "x86_64", "vnni"),
        (SANDY_BRIDGE, "x86_64", "other"),
        (GRAVITON, "aarch64", "arm64"),
        ("", "arm64", "arm64"),  # macOS on Apple Silicon: no /proc/cpuinfo, the machine name decides
        ("", "AMD64", "other"),  # Windows: nothing known
    ],
)
def test_targets_of_each_family(cpuinfo, machine, target):
    assert detect_cpu(cpuinfo, machine) == target
    assert target in TARGETS and DESCRIPTIONS[target]


def test_only_the_first_flags_line_counts():
    text = "flags : avx2\nflags : avx512f avx512_vnni\n"
    assert parse_cpuinfo_flags(text) == {"avx2"}


def test_this_machine_has_a_target():
    assert detect_cpu() in TARGETS
