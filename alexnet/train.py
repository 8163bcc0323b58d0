"""Train AlexNet: checkpoints every epoch, resume, metrics.jsonl, curves.png, DDP under torchrun.

alexnet-train --data synthetic --image-size 64 --epochs 4 --out runs/demo
torchrun --nproc_per_node=2 -m alexnet.cli.train --data synthetic --out runs/ddp

The order of a run: `train` checks the arguments (and a --resume file) and makes --out; `_setup`
builds the data, model and optimizer; `_resume` loads a checkpoint into them; then one epoch at a
time `_train_epoch` (every rank), `_epoch_row` (validation) and `_save_epoch` (rank 0 alone).
The pieces of an epoch (schedule, step, validation, seeds) are in alexnet/trainloop.py.
"""

from __future__ import annotations

import json
import math
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from alexnet.augment import describe_augment
from alexnet.checkpoint import Checkpoint, load_checkpoint, load_state_into, save_checkpoint
from alexnet.data import (
    SYNTHETIC_TRAIN_PER_CLASS,
    SYNTHETIC_VAL_PER_CLASS,
    DataBundle,
    load_data,
    reraise_worker_error,
    size_notice,
)
from alexnet.model import AlexNet, AlexNetConfig
from alexnet.recipe import DivergenceError, TrainArgs, TrainError, TrainState, resolve_recipe
from alexnet.run_folder import check_creatable, make_folder, remove_if_empty
from alexnet.trainloop import (
    build_optimizer,
    distributed,
    diverged,
    finite_state,
    format_row,
    own_rng,
    pick_device,
    seed_epoch,
    train_one_epoch,
    validate,
)
from runtime.errors import DeployError
from runtime.outputs import OutputError, atomic_write
from runtime.preprocess import PreprocessSpec

__all__ = ["DivergenceError", "TrainError", "train"]

# Flags that may differ on --resume: where the run writes and runs, and how long it goes on.
RESUME_OVERRIDABLE = {"out", "workers", "device", "epochs"}


def train(args: TrainArgs, resume: str | None = None, echo=print, explicit: set[str] | None = None) -> list[dict]:
    """Run (or continue) training; returns the per-epoch history. Rank 0 alone writes and prints.

    `explicit`: the argument names the user gave (on --resume only those in RESUME_OVERRIDABLE may
    differ from the stored run; None means all of `args` was given).
    """
    resumed = None
    args = resolve_recipe(args).validate()
    if resume:
        resumed = (resume, *_resume_args(resume, args, set(TrainArgs().to_dict()) if explicit is None else explicit))
        args = resolve_recipe(resumed[2].args)  # a checkpoint from before --augment: its size and augmentation
    rank, world, local_rank = distributed()
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(args.out)
    # The folders this run would make (deepest first): made at the first save, so a run killed before
    # it (SIGKILL, a lost node) leaves nothing; removed again if the run fails with them still empty.
    created = [p for p in (out, *out.parents) if not p.exists()] if rank == 0 else []
    if rank == 0:
        check_creatable(out, created)
    try:
        with own_rng(device):
            return _run(args, resumed, device, echo)
    except BaseException as exc:
        remove_if_empty(created)
        if isinstance(exc, DeployError):
            # The run is over: drop its frames' locals so that a DataLoader iterator in the traceback shuts
            # its workers down now, in this thread (left to the garbage collector, that can happen in a
            # queue's feeder thread: "Bad file descriptor"). Then a worker's error gets its own one-line
            # message back ("Caught ImageLoadError in DataLoader worker process 1." names no file).
            traceback.clear_frames(exc.__traceback__)
            reraise_worker_error(exc)
        raise


def _resume_args(path: str, args: TrainArgs, explicit: set[str]) -> tuple[Checkpoint, TrainState]:
    """The checkpoint to resume and its training state, whose `args` are the stored run's with the
    overridable flags given now. Checked before any data is built: the file is untrusted input."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt.training, dict) or "optimizer" not in ckpt.training:
        raise TrainError(f"{path} holds no optimizer/epoch state (a best.pth or weights file); resume from last.pth")
    state = TrainState.from_dict(ckpt.training, path)
    if not finite_state(ckpt.model_state):
        raise DivergenceError(f"{path} holds non-finite weights (that run diverged); start a new run with a lower --lr")
    stored = state.args
    for name in sorted(explicit - RESUME_OVERRIDABLE):
        if getattr(args, name) != getattr(stored, name):
            flag = "--" + name.replace("_", "-")
            raise TrainError(
                f"{flag} {getattr(args, name)} differs from the resumed run's {getattr(stored, name)} "
                f"({path} is variant {ckpt.config.variant!r} with {ckpt.config.num_classes} classes)"
            )
    for name in RESUME_OVERRIDABLE & (explicit | {"out"}):
        setattr(stored, name, getattr(args, name))
    return ckpt, state


@dataclass
class _Run:
    """What one process trains with: built once by `_setup`, the same every epoch."""

    args: TrainArgs
    out: Path
    device: torch.device
    rank: int
    world: int
    config: AlexNetConfig
    class_names: list[str]
    preprocess: PreprocessSpec  # the eval preprocessing: travels in the checkpoints
    model: AlexNet  # the weights (validated and saved); DDP wraps it for the training steps
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_loader: DataLoader  # batches: float32 (N, 3, S, S), int64 (N,)
    val_loader: DataLoader
    sampler: DistributedSampler | None  # this rank's share of the train set, under torchrun
    generator: torch.Generator  # the train loader's: reseeded every epoch (seed_epoch)


def _run(args: TrainArgs, resumed: tuple[str, Checkpoint, TrainState] | None, device: torch.device, echo) -> list[dict]:
    """Set up, resume, then each epoch: train (all ranks), validate and save (rank 0), wait for all."""
    rank, world, _ = distributed()
    run = _setup(args, Path(args.out), device, rank, world, echo)
    state = _resume(run, *resumed) if resumed else TrainState(epoch=0, best_top1=-1.0, history=[], args=args)
    # Wrapped after resuming: DDP starts every rank from rank 0's weights.
    net = (
        nn.parallel.DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else run.model
    )
    for epoch in range(state.epoch, args.epochs):
        totals, result = _train_epoch(run, net, epoch)
        if rank == 0:
            row = _epoch_row(run, epoch, totals, result)
            _save_epoch(run, state, row)
            echo(format_row(row))
        if world > 1:
            dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    return state.history


def _setup(args: TrainArgs, out: Path, device: torch.device, rank: int, world: int, echo) -> _Run:
    """The data, the model (initial weights from --seed), its optimizer and the loaders; rank 0 says what it trains."""
    bundle = load_data(
        args.data,
        image_size=args.image_size,
        seed=args.seed,
        variant=args.variant,
        augment=args.augment,
        flip=args.flip,
        synthetic_train_per_class=args.synthetic_train_per_class or SYNTHETIC_TRAIN_PER_CLASS,
        synthetic_val_per_class=args.synthetic_val_per_class or SYNTHETIC_VAL_PER_CLASS,
    )
    num_classes = args.num_classes or len(bundle.class_names)
    if num_classes != len(bundle.class_names):
        raise TrainError(f"--num-classes {num_classes} but {args.data} has {len(bundle.class_names)} classes")
    config = AlexNetConfig(variant=args.variant, num_classes=num_classes, dropout=args.dropout)
    torch.manual_seed(args.seed)  # the initial weights
    model = AlexNet(config)
    model.check_input_size(bundle.preprocess.crop, bundle.preprocess.crop)
    if rank == 0:
        _announce(args, bundle, device, echo)
    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    sampler = (
        DistributedSampler(bundle.train, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        if world > 1
        else None
    )
    generator = torch.Generator()
    train_loader = DataLoader(
        bundle.train,
        batch_size=args.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=args.workers,
        generator=generator,
        drop_last=len(bundle.train) > args.batch_size,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    val_loader = DataLoader(bundle.val, batch_size=args.batch_size * 2, num_workers=args.workers)
    optimizer = build_optimizer(model, args)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    return _Run(
        args, out, device, rank, world, config, bundle.class_names, bundle.preprocess,
        model, optimizer, scaler, train_loader, val_loader, sampler, generator,
    )  # fmt: skip


def _announce(args: TrainArgs, bundle: DataBundle, device: torch.device, echo) -> None:
    """One line naming what the run trains (and a notice when the images are much smaller than the input)."""
    size = bundle.preprocess.crop
    echo(
        f"training {args.variant} on {bundle.name}: {len(bundle.train)} train / {len(bundle.val)} val images, "
        f"{size}x{size} input, augment {describe_augment(bundle.augment, bundle.flip)}, {args.epochs} epochs on {device}"
    )
    notice = size_notice(bundle, args.data)
    if notice:
        echo(notice)


def _resume(run: _Run, path: str, ckpt: Checkpoint, state: TrainState) -> TrainState:
    """Load the checkpoint's weights, optimizer and grad-scaler states into the run; `state` goes on."""
    if ckpt.config != run.config or ckpt.class_names != run.class_names:
        raise TrainError(f"--resume {path} was trained as {ckpt.config} on other classes than {run.args.data} now has")
    load_state_into(run.model, ckpt.model_state)  # CheckpointError naming a layer that does not fit
    try:
        run.optimizer.load_state_dict(state.optimizer)
        run.scaler.load_state_dict(state.scaler)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise TrainError(f"--resume {path}: its optimizer or grad-scaler state does not fit this run ({exc})") from exc
    for group in run.optimizer.param_groups:  # load_state_dict checks the counts; a wrong shape fails at a step
        for param in group["params"]:
            for name, value in run.optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.ndim and value.shape != param.shape:
                    raise TrainError(f"--resume {path}: its optimizer's {name} of shape {tuple(value.shape)} "
                                     f"does not fit a parameter of shape {tuple(param.shape)}")  # fmt: skip
    return state


def _train_epoch(run: _Run, net: nn.Module, epoch: int) -> tuple[torch.Tensor, dict]:
    """One epoch of training steps on this rank: float64 (loss sum, correct, images) summed over
    all ranks, and train_one_epoch's result (seconds, last lr)."""
    from tqdm import tqdm

    seed_epoch(run.args.seed, epoch, run.rank, run.generator)  # shuffle, augmentation, dropout
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    steps = len(run.train_loader)
    bar = dict(desc=f"epoch {epoch + 1}/{run.args.epochs}", unit="batch", disable=run.rank != 0, leave=False)
    with tqdm(total=steps, **bar) as progress:
        result = train_one_epoch(
            net, run.train_loader, run.optimizer, run.scaler, run.args, run.device, epoch, epoch * steps, progress
        )
    totals = result["totals"]
    if run.world > 1:  # NCCL reduces device tensors only
        totals = totals.to(run.device)
        dist.all_reduce(totals)
        totals = totals.cpu()
    return totals, result


def _epoch_row(run: _Run, epoch: int, totals: torch.Tensor, result: dict) -> dict:
    """The epoch's metrics row (validation on rank 0 alone); a non-finite number is divergence."""
    row = {
        "epoch": epoch + 1,
        "epochs": run.args.epochs,
        "train_loss": float(totals[0] / totals[2]),
        "train_top1": float(totals[1] / totals[2]),
        **validate(run.model, run.val_loader, run.device, run.args),
        "lr": result["lr"],
        "images_per_s": float(totals[2]) / result["seconds"],
        "seconds": result["seconds"],
    }
    for key in ("train_loss", "val_loss", "val_top1", "val_top5"):
        if not math.isfinite(row[key]):
            what = "validation loss" if key == "val_loss" else key.replace("_", " ")
            raise diverged(f"{what} is {row[key]}", epoch, None, result["lr"], run.args)
    return row


def _save_epoch(run: _Run, state: TrainState, row: dict) -> None:
    """Add `row` to `state`; write last.pth, best.pth (on a new best), metrics.jsonl and curves.png.

    Non-finite weights are never written: last.pth keeps the previous (finite) epoch."""
    weights = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    if not finite_state(weights):
        raise diverged("the weights hold nan/inf", row["epoch"] - 1, None, row["lr"], run.args)
    improved = row["val_top1"] > state.best_top1
    state.epoch, state.best_top1 = row["epoch"], max(state.best_top1, row["val_top1"])
    state.history.append(row)
    state.optimizer, state.scaler = run.optimizer.state_dict(), run.scaler.state_dict()
    ckpt = Checkpoint(run.config, weights, run.class_names, run.preprocess, training=state.to_dict())
    make_folder(run.out)
    try:
        if improved:  # best.pth is for evaluation and export: no optimizer state (a third of the size)
            save_checkpoint(replace(ckpt, training=state.to_dict(resumable=False)), run.out / "best.pth")
        save_checkpoint(ckpt, run.out / "last.pth")
        _write_metrics(run.out, state.history)
        from alexnet.plots import save_curves

        save_curves(state.history, run.out / "curves.png")
    except OutputError as exc:  # metrics.jsonl / curves.png on a full disk; checkpoints raise CheckpointError
        raise TrainError(str(exc)) from exc


def _write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl mirrors the checkpoint's history, rewritten atomically (no duplicate lines after a resume).

    Strict JSON (no NaN/Infinity): rows are checked finite before they get here."""
    text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(text))
