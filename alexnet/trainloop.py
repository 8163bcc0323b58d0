"""The pieces of one training run: optimizer, learning-rate schedule, device, one epoch, validation.

alexnet/train.py strings them together (checkpoints, resume, DDP, files).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from alexnet.metrics import topk_accuracy
from alexnet.recipe import RECIPES, DivergenceError, TrainArgs, TrainError
from runtime.backends.torch_common import resolve_torch_device


def build_optimizer(model: nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    # No weight decay on biases: the usual practice, and the paper decays weights only.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernels update each parameter in one pass: with 58M parameters the unfused AdamW
    # step (sqrt, div, addcdiv over every tensor) took 40% of a CPU training step; fused, training
    # runs at ~175 instead of ~120 images/s (64 px, batch 64, 2 cores). CPU and CUDA: torch >= 2.4.
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, fused=fused or None)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=args.lr, fused=fused or None)
    raise TrainError(f"unknown optimizer {args.optimizer!r}; choose sgd or adamw")


def learning_rate(step: int, steps_per_epoch: int, args: TrainArgs) -> float:
    """The schedule as a pure function of the global step (so resuming needs only the step)."""
    warmup = int(round(args.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return args.lr * (step + 1) / warmup
    if args.schedule == "cosine":
        total = max(args.epochs * steps_per_epoch - warmup, 1)
        progress = min((step - warmup) / total, 1.0)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if args.schedule == "step":
        return args.lr * args.gamma ** (step // (args.step_size * steps_per_epoch))
    raise TrainError(f"unknown schedule {args.schedule!r}; choose cosine or step")


def pick_device(name: str) -> torch.device:
    """--device for training: the same rule as everywhere (auto: cuda, then mps, then cpu)."""
    return resolve_torch_device(torch, name)


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    if device.type != "cuda":
        raise TrainError(f"--amp {amp} needs a CUDA device (this run is on {device.type})")
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler,
    args: TrainArgs,
    device: torch.device,
    epoch: int,
    first_step: int,
    progress,
) -> dict:
    """One pass over `loader`; returns summed loss/correct/count (summed, so ranks can all-reduce)."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images
    start = time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        lr = learning_rate(first_step + i, len(loader), args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, args.amp):
            logits = model(images)  # (N, classes)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        value = loss.item()  # the step's one sync; a non-finite loss is divergence (with fp16 too: the
        if not math.isfinite(value):  # scaler skips steps whose *gradients* overflow, not a nan/inf loss)
            raise diverged(f"loss is {value}", epoch, i + 1, lr, args)
        batch = torch.tensor(
            [value * len(labels), (logits.argmax(1) == labels).sum().item(), len(labels)], dtype=torch.float64
        )
        totals += batch
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress.set_postfix(
                loss=f"{totals[0] / totals[2]:.3f}",
                acc=f"{totals[1] / totals[2]:.3f}",
                img_s=f"{totals[2] / max(elapsed, 1e-9):.0f}",
                lr=f"{lr:.2e}",
            )
            progress.update(1)
    totals_time = time.perf_counter() - start
    return {"totals": totals, "seconds": totals_time, "lr": lr}


def diverged(what: str, epoch: int, step: int | None, lr: float, args: TrainArgs) -> DivergenceError:
    """The one-line error for a run whose loss or weights went non-finite (`epoch` 0-based)."""
    where = f"at epoch {epoch + 1}, step {step}" if step is not None else f"after epoch {epoch + 1}"
    recipe_lr = RECIPES.get(args.recipe, RECIPES["default"])["lr"]
    return DivergenceError(
        f"training diverged: {what} {where} (lr {lr:.3g}); lower --lr (the {args.recipe} recipe's is {recipe_lr:g})"
    )


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, device: torch.device, args: TrainArgs) -> dict:
    """Val loss, top-1 and top-5 over the whole loader (one process)."""
    model.eval()
    logits_all, labels_all = [], []
    for images, labels in loader:
        images = images.to(device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, args.amp):
            logits_all.append(model(images).float().cpu())
        labels_all.append(labels)
    logits, labels = torch.cat(logits_all), torch.cat(labels_all)
    loss = nn.functional.cross_entropy(logits, labels).item()
    logits_np, labels_np = logits.numpy(), labels.numpy()
    return {
        "val_loss": loss,
        "val_top1": topk_accuracy(logits_np, labels_np, 1),
        "val_top5": topk_accuracy(logits_np, labels_np, 5),
    }


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Every epoch's randomness (shuffle, augmentation, dropout) is a function of (seed, epoch, rank),
    so a run resumed at epoch e computes exactly what the uninterrupted run would have."""
    torch.manual_seed(seed * 1_000_003 + epoch * 1_009 + rank)
    np.random.seed((seed * 1_000_003 + epoch * 1_009 + rank) % 2**32)
