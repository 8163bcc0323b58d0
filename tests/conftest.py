"""Shared test set-up: `gpu` and `macos` tests skip, with the reason, where they cannot run."""

from __future__ import annotations

import sys

import pytest


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = None if _cuda_available() else pytest.mark.skip(reason="needs a CUDA device (none on this machine)")
    skip_mac = None if sys.platform == "darwin" else pytest.mark.skip(reason="needs macOS (Core ML prediction / MPS)")
    # The int8 benchmark tests run OpenVINO's CPU plugin and NNCF in this process, which leaves
    # process state behind (see _sound_signal_stack) that has crashed later tests: run them last.
    items.sort(key=lambda item: item.path.name == "test_bench_int8.py")
    for item in items:
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)
        if skip_mac and "macos" in item.keywords:
            item.add_marker(skip_mac)


@pytest.fixture
def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous): no clash between runs."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`make demo`'s model, trained once per session: (best.pth path, per-epoch history).
    The README's accuracy claim (test_train) and the int8 gate (test_quantize) share it."""
    from alexnet.recipe import TrainArgs
    from alexnet.train import train

    out = tmp_path_factory.mktemp("demo-run")
    args = TrainArgs(data="synthetic", image_size=64, epochs=4, batch_size=64, out=str(out))
    history = train(args, echo=lambda s: None)
    return out / "best.pth", history


@pytest.fixture
def narrow_training():
    """Training runs in this test build the tests' small model (builders.narrow_training)."""
    from builders import narrow_training

    with narrow_training():
        yield


# The untrained cifar checkpoint (builders.saved_checkpoint(): 32 px, the 5 builders.CLASSES, 1/16
# width) and its exports, built once per session: the export, int8 and CLI tests all read the same one.
# The files are shared: a test that changes one copies it to its tmp_path first.


@pytest.fixture(scope="session")
def cifar_checkpoint(tmp_path_factory):
    """builders.saved_checkpoint() saved as model.pth, alone in its folder with its default-named
    exports (the fixtures below): model.pt, model.onnx beside it."""
    from builders import saved_checkpoint

    return saved_checkpoint(tmp_path_factory.mktemp("cifar") / "model.pth")


@pytest.fixture(scope="session")
def cifar_torchscript(cifar_checkpoint):
    """export_artifact(checkpoint, "torchscript"): dynamic batch, default output name beside it."""
    from export import export_artifact

    return export_artifact(cifar_checkpoint, "torchscript")


@pytest.fixture(scope="session")
def cifar_onnx(cifar_checkpoint):
    """export_artifact(checkpoint, "onnx"): dynamic batch, opset 18, default output name beside it."""
    from export import export_artifact

    return export_artifact(cifar_checkpoint, "onnx")


@pytest.fixture(scope="session")
def cifar_coreml_fp16(cifar_checkpoint, tmp_path_factory):
    """The Core ML default: fp16, image input (batch 1); in a folder of its own."""
    from export import export_artifact

    return export_artifact(
        cifar_checkpoint, "coreml", tmp_path_factory.mktemp("cifar-coreml") / "fp16.mlpackage", precision="fp16"
    )


@pytest.fixture(autouse=True)
def _signal_stack_kept():
    """OpenVINO's CPU plugin replaces the compiling thread's alternate signal stack and later frees
    it; the next signal handled on it (a DataLoader's SIGCHLD, SIGINT) is a SIGSEGV of the whole run.
    Everything here that compiles an OpenVINO model keeps the stack (runtime/signal_stack.py); a test
    that let it change fails by name, and the stack is put back so the rest of the run is unharmed."""
    from runtime.signal_stack import current_signal_stack, kept_signal_stack

    before = current_signal_stack()
    with kept_signal_stack():
        yield
        after = current_signal_stack()
    assert after == before or "openvino" not in sys.modules, (
        "this test let OpenVINO replace the thread's signal stack: compile inside runtime.signal_stack.kept_signal_stack()"
    )


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """CLIs run in-process (`--threads 1`) call torch.set_num_threads at their entry point, which is
    process-wide: without this, every later test would run on one thread."""
    torch = sys.modules.get("torch")  # never imported here: the edge tests run without torch
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


# Fuzzing profiles (tests/test_fuzz.py): "ci" is the default, fixed examples so CI cannot flake;
# `pytest --hypothesis-profile long` looks twenty times harder with fresh random examples.
# hypothesis comes with the [dev] extra; the edge venv (make test-edge) runs without it.
try:
    from hypothesis import HealthCheck, settings
except ImportError:
    pass
else:
    settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None, database=None, print_blob=True)
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
