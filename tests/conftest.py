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
    for item in items:
        if skip_gpu and "gpu" in item.keywords:
            item.add_marker(skip_gpu)
        if skip_mac and "macos" in item.keywords:
            item.add_marker(skip_mac)
