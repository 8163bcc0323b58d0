"""The pieces of one training run: optimizer, learning-rate schedule, device, one epoch, validation,
the seeds of each epoch.

alexnet/train.py strings them together (checkpoints, resume, DDP, files).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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


# How often (in steps) train_one_epoch reads the losses back from the device, to stop a diverged run
# and refresh the progress bar. In between, steps queue up on a GPU without waiting for the host.
SYNC_EVERY = 25


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    args: TrainArgs,
    device: torch.device,
    epoch: int,
    first_step: int,
    progress=None,
) -> dict:
    """One pass over `loader`: {"totals": float64 (loss sum, correct, images) (summed, so ranks can
    all-reduce), "seconds", "lr" (the last step's)}.

    Each step's loss and correct count stay on the device; `_read_back` fetches them every
    SYNC_EVERY steps and at the end, and stops the run at the first non-finite loss."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    losses = torch.zeros(len(loader), device=device)  # (steps,): each step's mean loss, float32
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = _Seen(epoch=epoch, args=args, start=time.perf_counter())
    for i, (images, labels) in enumerate(loader):
        lr = learning_rate(first_step + i, len(loader), args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, args.amp):
            logits = model(images)  # (N, classes)
            loss = criterion(logits, labels)  # () float32, under autocast too
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses[i] = loss.detach()
        correct += (logits.argmax(1) == labels).sum()
        seen.lrs.append(lr)
        seen.sizes.append(len(labels))
        if (i + 1) % SYNC_EVERY == 0 or i + 1 == len(loader):
            _read_back(seen, losses, correct, progress)
        if progress is not None:
            progress.update(1)
    if seen.read < len(seen.sizes):  # only if the loader ran short of len(loader)
        _read_back(seen, losses, correct, None)
    totals = torch.tensor([seen.loss_sum, seen.correct, sum(seen.sizes)], dtype=torch.float64)
    return {"totals": totals, "seconds": time.perf_counter() - seen.start, "lr": seen.lrs[-1]}


@dataclass
class _Seen:
    """What train_one_epoch has read back from the device so far (and the host's per-step lr, size)."""

    epoch: int
    args: TrainArgs
    start: float  # time.perf_counter() at the epoch's start
    lrs: list[float] = field(default_factory=list)  # per step
    sizes: list[int] = field(default_factory=list)  # per step: images in its batch
    read: int = 0  # steps whose loss was read back
    loss_sum: float = 0.0  # sum over the read steps of loss * images
    correct: int = 0


def _read_back(seen: _Seen, losses: torch.Tensor, correct: torch.Tensor, progress) -> None:
    """One host sync: the losses since the last read. A non-finite one is divergence (with fp16 too:
    the scaler skips steps whose *gradients* overflow, not a nan/inf loss), named by its step."""
    steps = len(seen.sizes)
    values = losses[seen.read : steps].tolist()
    for step, value in enumerate(values, seen.read):
        if not math.isfinite(value):
            raise diverged(f"loss is {value}", seen.epoch, step + 1, seen.lrs[step], seen.args)
        seen.loss_sum += value * seen.sizes[step]  # float64, in step order: the same sum on every run
    seen.read, seen.correct = steps, int(correct.item())
    if progress is not None and steps:
        images = sum(seen.sizes)
        progress.set_postfix(
            loss=f"{seen.loss_sum / images:.3f}",
            acc=f"{seen.correct / images:.3f}",
            img_s=f"{images / max(time.perf_counter() - seen.start, 1e-9):.0f}",
            lr=f"{seen.lrs[-1]:.2e}",
        )


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
            logits_all.append(model(images).float())  # (N, classes), left on the device: no sync per batch
        labels_all.append(labels)
    logits, labels = torch.cat(logits_all).cpu(), torch.cat(labels_all)  # the one copy back
    loss = nn.functional.cross_entropy(logits, labels).item()
    logits_np, labels_np = logits.numpy(), labels.numpy()
    return {
        "val_loss": loss,
        "val_top1": topk_accuracy(logits_np, labels_np, 1),
        "val_top5": topk_accuracy(logits_np, labels_np, 5),
    }


def epoch_seeds(seed: int, epoch: int, rank: int = 0) -> tuple[int, int, int]:
    """(torch, data loader, numpy) seeds of one epoch on one rank: 64, 64 and 32 bits.

    SeedSequence hashes the triple, so no two (seed, epoch, rank) share a stream however many
    ranks run (an affine mix such as seed * P + epoch * Q + rank repeats once rank reaches Q)."""
    torch_seed, loader_seed, numpy_seed = np.random.SeedSequence([seed, epoch, rank]).generate_state(3, np.uint64)
    return int(torch_seed), int(loader_seed), int(numpy_seed) % 2**32


def seed_epoch(seed: int, epoch: int, rank: int = 0, generator: torch.Generator | None = None) -> None:
    """Every epoch's randomness (shuffle, augmentation, dropout) is a function of (seed, epoch, rank),
    so a run resumed at epoch e computes exactly what the uninterrupted run would have.

    Seeds torch's global generator (dropout; augmentation in this process with --workers 0), numpy's,
    and `generator`, the train loader's (its shuffle order and its workers' seeds). train() gives the
    caller its global generator states back afterwards."""
    torch_seed, loader_seed, numpy_seed = epoch_seeds(seed, epoch, rank)
    torch.manual_seed(torch_seed)
    np.random.seed(numpy_seed)
    if generator is not None:
        generator.manual_seed(loader_seed)


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def finite_state(state: dict) -> bool:
    """Every floating-point tensor of a state dict is finite (no nan/inf weight is ever saved)."""
    return all(bool(torch.isfinite(v).all()) for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


@contextmanager
def own_rng(device: torch.device) -> Iterator[None]:
    """A run seeds torch's and numpy's global generators (initial weights, then every epoch): the
    caller gets its own states back afterwards (CPU and CUDA; on MPS the MPS generator stays seeded)."""
    numpy_state = np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


def format_row(row: dict) -> str:
    return (
        f"epoch {row['epoch']}/{row['epochs']}  train loss {row['train_loss']:.4f}  acc {row['train_top1']:.3f}  "
        f"val loss {row['val_loss']:.4f}  top1 {row['val_top1']:.3f}  top5 {row['val_top5']:.3f}  "
        f"lr {row['lr']:.2e}  {row['images_per_s']:.0f} img/s"
    )
