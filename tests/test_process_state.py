"""Library calls leave process-wide state alone (threads, umask, matplotlib, loggers); CLIs may set it."""

from __future__ import annotations

import logging
import subprocess
import sys

import torch

import runtime


def test_torch_backend_threads_are_left_to_the_application(cifar_checkpoint):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with runtime.load(cifar_checkpoint, device="cpu", threads=target):
        assert torch.get_num_threads() == before


def test_alexnet_run_sets_torch_threads_at_its_entry_point(cifar_checkpoint, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from runtime.cli import main

    Image.new("RGB", (40, 40), "red").save(tmp_path / "x.png")
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    result = CliRunner().invoke(main, ["-m", str(cifar_checkpoint), "--threads", str(target), str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == target  # conftest restores it after the test


def test_plots_and_viz_use_no_pyplot_and_leave_logging_alone(tmp_path):
    code = """
import sys, logging
from alexnet.plots import save_curves
import numpy as np
rows = [dict(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e, train_top1=0.5, val_top1=0.6, val_top5=0.9) for e in (1, 2)]
save_curves(rows, sys.argv[1])
from alexnet.model import build_alexnet
from alexnet.plots import save_png
from alexnet.summary import summarize
from alexnet.viz.architecture import architecture_figure
from alexnet.viz.grid import image_grid_figure
save_png(architecture_figure(summarize(build_alexnet(variant="cifar", num_classes=3)), {}), sys.argv[1] + ".arch.png")
save_png(image_grid_figure([np.zeros((8, 8, 3), np.uint8)] * 3, ["a", "b", "c"], "t"), sys.argv[1] + ".grid.png")
from export.to_coreml import _import_coremltools
_import_coremltools()
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert logging.getLogger("coremltools").level == logging.NOTSET, "coremltools logger level changed"
"""
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "curves.png")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert logging.getLogger("coremltools").level == logging.NOTSET
