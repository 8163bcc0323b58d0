"""Train AlexNet: checkpoints every epoch, resume, metrics.jsonl, curves.png, DDP under torchrun.

alexnet-train --data synthetic --image-size 64 --epochs 4 --out runs/demo
torchrun --nproc_per_node=2 -m alexnet.cli.train --data synthetic --out runs/ddp
"""

from __future__ import annotations

import json
import math
import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from alexnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from alexnet.data import SYNTHETIC_TRAIN_PER_CLASS, SYNTHETIC_VAL_PER_CLASS, load_data, reraise_worker_error
from alexnet.model import AlexNet, AlexNetConfig
from alexnet.recipe import DivergenceError, TrainArgs, TrainError, resolve_recipe
from alexnet.trainloop import build_optimizer, diverged, pick_device, seed_epoch, train_one_epoch, validate
from runtime.errors import DeployError
from runtime.outputs import OutputError, atomic_write

__all__ = ["DivergenceError", "TrainError", "train"]


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


# Flags that may differ on --resume: where the run writes and runs, and how long it goes on.
RESUME_OVERRIDABLE = {"out", "workers", "device", "epochs"}


def _resume_args(path: str, args: TrainArgs, explicit: set[str]) -> tuple[TrainArgs, dict]:
    """The resumed run's own arguments (from the checkpoint), with the overridable flags given now."""
    ckpt = load_checkpoint(path)
    if ckpt.training is None or "optimizer" not in ckpt.training:
        raise TrainError(f"{path} holds no optimizer/epoch state (a best.pth or weights file); resume from last.pth")
    try:
        stored = TrainArgs(**ckpt.training["args"])
    except (TypeError, KeyError) as exc:
        raise TrainError(f"{path}: its stored training arguments are not this version's ({exc})") from exc
    stored.validate()  # a checkpoint is untrusted input: its arguments pass the same checks as the flags
    if not _finite(ckpt.model_state):
        raise DivergenceError(f"{path} holds non-finite weights (that run diverged); start a new run with a lower --lr")
    for name in sorted(explicit - RESUME_OVERRIDABLE):
        if getattr(args, name) != getattr(stored, name):
            flag = "--" + name.replace("_", "-")
            raise TrainError(
                f"{flag} {getattr(args, name)} differs from the resumed run's {getattr(stored, name)} "
                f"({path} is variant {ckpt.config.variant!r} with {ckpt.config.num_classes} classes)"
            )
    for name in RESUME_OVERRIDABLE & (explicit | {"out"}):
        setattr(stored, name, getattr(args, name))
    return stored, {"model": ckpt.model_state, "config": ckpt.config, "class_names": ckpt.class_names, **ckpt.training}


def _finite(state: dict) -> bool:
    """Every floating-point tensor of a state dict is finite (no nan/inf weight is ever saved)."""
    return all(bool(torch.isfinite(v).all()) for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def _write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl mirrors the checkpoint's history, rewritten atomically (no duplicate lines after a resume).

    Strict JSON (no NaN/Infinity): rows are checked finite before they get here."""
    text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in history)
    atomic_write(out / "metrics.jsonl", lambda tmp: Path(tmp).write_text(text))


def _format_row(row: dict) -> str:
    return (
        f"epoch {row['epoch']}/{row['epochs']}  train loss {row['train_loss']:.4f}  acc {row['train_top1']:.3f}  "
        f"val loss {row['val_loss']:.4f}  top1 {row['val_top1']:.3f}  top5 {row['val_top5']:.3f}  "
        f"lr {row['lr']:.2e}  {row['images_per_s']:.0f} img/s"
    )


def train(args: TrainArgs, resume: str | None = None, echo=print, explicit: set[str] | None = None) -> list[dict]:
    """Run (or continue) training; returns the per-epoch history. Rank 0 alone writes and prints.

    `explicit`: the argument names the user gave (on --resume only those in RESUME_OVERRIDABLE may
    differ from the stored run; None means all of `args` was given).
    """
    state = None
    args = resolve_recipe(args).validate()
    if resume:
        args, state = _resume_args(resume, args, set(TrainArgs().to_dict()) if explicit is None else explicit)
    rank, world, local_rank = _distributed()
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(args.out)
    created: list[Path] = []  # the folders this run made (deepest first): removed again if it fails with them empty
    if rank == 0:
        created = [p for p in (out, *out.parents) if not p.exists()]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainError(f"cannot create {out}: {exc.strerror or exc}") from exc
    try:
        return _run(args, state, resume, out, device, rank, world, echo)
    except BaseException as exc:
        _remove_if_empty(created)
        if isinstance(exc, DeployError):
            # The run is over: drop its frames' locals so that a DataLoader iterator in the traceback shuts
            # its workers down now, in this thread (left to the garbage collector, that can happen in a
            # queue's feeder thread: "Bad file descriptor"). Then a worker's error gets its own one-line
            # message back ("Caught ImageLoadError in DataLoader worker process 1." names no file).
            traceback.clear_frames(exc.__traceback__)
            reraise_worker_error(exc)
        raise


def _remove_if_empty(created: list[Path]) -> None:
    """Remove the folders a failed run made, deepest first, while they are empty (os.rmdir refuses otherwise)."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _run(
    args: TrainArgs,
    state: dict | None,
    resume: str | None,
    out: Path,
    device: torch.device,
    rank: int,
    world: int,
    echo,
) -> list[dict]:
    train_per = args.synthetic_train_per_class or SYNTHETIC_TRAIN_PER_CLASS
    val_per = args.synthetic_val_per_class or SYNTHETIC_VAL_PER_CLASS
    bundle = load_data(
        args.data,
        image_size=args.image_size,
        seed=args.seed,
        synthetic_train_per_class=train_per,
        synthetic_val_per_class=val_per,
    )
    num_classes = args.num_classes or len(bundle.class_names)
    if num_classes != len(bundle.class_names):
        raise TrainError(f"--num-classes {num_classes} but {args.data} has {len(bundle.class_names)} classes")
    config = AlexNetConfig(variant=args.variant, num_classes=num_classes, dropout=args.dropout)

    torch.manual_seed(args.seed)  # the initial weights
    model = AlexNet(config)
    model.check_input_size(bundle.preprocess.crop, bundle.preprocess.crop)
    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, args)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    history, start_epoch, best = [], 0, -1.0
    if state is not None:
        if state["config"] != config or state["class_names"] != bundle.class_names:
            raise TrainError(
                f"--resume {resume} was trained as {state['config']} on other classes than {args.data} now has"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history, start_epoch, best = list(state["history"]), int(state["epoch"]), float(state["best_top1"])
    net = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )

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

    from tqdm import tqdm

    for epoch in range(start_epoch, args.epochs):
        seed_epoch(args.seed, epoch, rank)
        generator.manual_seed(args.seed * 7919 + epoch * 31 + rank)  # this epoch's shuffle and worker seeds
        if sampler is not None:
            sampler.set_epoch(epoch)
        with tqdm(
            total=len(train_loader),
            desc=f"epoch {epoch + 1}/{args.epochs}",
            unit="batch",
            disable=rank != 0,
            leave=False,
        ) as progress:
            result = train_one_epoch(
                net, train_loader, optimizer, scaler, args, device, epoch, epoch * len(train_loader), progress
            )
        totals = result["totals"]
        if world > 1:  # loss sum, correct, images over all ranks (NCCL reduces device tensors only)
            totals = totals.to(device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        if rank == 0:
            row = {
                "epoch": epoch + 1,
                "epochs": args.epochs,
                "train_loss": float(totals[0] / totals[2]),
                "train_top1": float(totals[1] / totals[2]),
                **validate(model, val_loader, device, args),
                "lr": result["lr"],
                "images_per_s": float(totals[2]) / result["seconds"],
                "seconds": result["seconds"],
            }
            for key in ("train_loss", "val_loss", "val_top1", "val_top5"):
                if not math.isfinite(row[key]):
                    what = "validation loss" if key == "val_loss" else key.replace("_", " ")
                    raise diverged(f"{what} is {row[key]}", epoch, None, result["lr"], args)
            history.append(row)
            improved = row["val_top1"] > best
            best = max(best, row["val_top1"])
            _save_epoch(out, model, optimizer, scaler, args, config, bundle, history, epoch + 1, best, improved)
            echo(_format_row(row))
        if world > 1:
            dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    return history


def _save_epoch(
    out: Path, model, optimizer, scaler, args: TrainArgs, config, bundle, history, epoch, best, improved
) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not _finite(state):  # last.pth keeps the previous (finite) epoch; best.pth is never non-finite
        raise diverged("the weights hold nan/inf", epoch - 1, None, history[-1]["lr"], args)
    training = {
        "epoch": epoch,
        "best_top1": best,
        "history": history,
        "args": args.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
    }
    ckpt = Checkpoint(
        config=config,
        model_state=state,
        class_names=bundle.class_names,
        preprocess=bundle.preprocess,
        training=training,
    )
    try:
        _write_epoch_files(out, ckpt, training, history, improved)
    except (
        OutputError
    ) as exc:  # metrics.jsonl / curves.png on a full disk; checkpoints raise CheckpointError themselves
        raise TrainError(str(exc)) from exc


def _write_epoch_files(out: Path, ckpt: Checkpoint, training: dict, history: list[dict], improved: bool) -> None:
    config, state = ckpt.config, ckpt.model_state
    if improved:  # best.pth is for evaluation and export: no optimizer state (a third of the size)
        best_training = {k: v for k, v in training.items() if k not in ("optimizer", "scaler")}
        save_checkpoint(Checkpoint(config, state, ckpt.class_names, ckpt.preprocess, best_training), out / "best.pth")
    save_checkpoint(ckpt, out / "last.pth")
    _write_metrics(out, history)
    from alexnet.plots import save_curves

    save_curves(history, out / "curves.png")
