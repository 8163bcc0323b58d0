"""runtime/signal_stack.py: a compile by OpenVINO's CPU plugin leaves the caller's signal stack as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.runtime

CHILD = """
import faulthandler, os, signal, sys
import runtime
from runtime.signal_stack import current_signal_stack

faulthandler.enable()  # an alternate signal stack of its own, as pytest and many servers have
before = current_signal_stack()
with runtime.load(sys.argv[1]) as predictor:
    assert current_signal_stack() == before, (before, current_signal_stack())
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))  # a Python handler: SA_ONSTACK
os.kill(os.getpid(), signal.SIGUSR1)  # on a freed stack this would be a SIGSEGV
"""


@pytest.mark.skipif(sys.platform != "linux", reason="sigaltstack as OpenVINO's CPU plugin uses it here")
def test_loading_an_ir_keeps_the_signal_stack_and_signals_still_work(tmp_path):
    pytest.importorskip("openvino", reason="the openvino backend needs openvino (the [openvino] extra)")
    from tiny_openvino import write_tiny_ir

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(write_tiny_ir(tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "handled", done.stderr
