"""A training run's arguments and recipes: `TrainArgs` (stored in every checkpoint, so `--resume`
continues the same run), the named recipes that fill the knobs left unset, and their checks;
`TrainState`, a checkpoint's "training" section.

The CLI's defaults and help texts are generated from here (alexnet/cli/train.py), so each value
is written once. No torch: checking arguments needs none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from alexnet.augment import AUGMENTATIONS, default_augment
from alexnet.input_size import data_kind, default_image_size
from alexnet.model import VARIANTS
from runtime.errors import DeployError


class TrainError(DeployError, ValueError):
    """A run cannot start or continue (bad arguments, bad resume file, no such device)."""


class DivergenceError(TrainError):
    """The loss (or the weights) became non-finite: the run stops, nothing non-finite is saved."""


@dataclass
class TrainArgs:
    """Every knob of a run; stored in checkpoints so `--resume` continues the same run."""

    data: str = "synthetic"
    out: str = "runs/demo"
    variant: str = "torchvision"
    num_classes: int | None = None  # None: the dataset's class count
    image_size: int | None = None  # None: the variant's, or the dataset's own if smaller (alexnet/input_size.py)
    epochs: int = 4
    batch_size: int = 64
    recipe: str = "default"  # "default" (AdamW, warmup + cosine) or "paper" (SGD 0.01, step decay)
    optimizer: str | None = None  # sgd | adamw; None: the recipe's
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str | None = None  # cosine | step
    warmup_epochs: float | None = None
    step_size: int = 30  # step schedule: decay every N epochs
    gamma: float = 0.1
    label_smoothing: float | None = None  # None: the recipe's (default 0.1, paper 0)
    dropout: float | None = None  # None: the recipe's (default 0, paper 0.5)
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: str = "none"  # none | bf16 | fp16 (CUDA)
    channels_last: bool = False
    synthetic_train_per_class: int | None = None
    synthetic_val_per_class: int | None = None
    augment: str | None = None  # alexnet/augment.py AUGMENTATIONS; None: the dataset's default at image_size
    flip: bool = True  # random horizontal flips

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> TrainArgs:
        """Reject out-of-range knobs before any data is built (TrainError naming the flag).

        The one check for the CLI, the `train()` API and `--resume` (whose arguments come from a
        checkpoint). Knobs left to the recipe (None) must be resolved first (`resolve_recipe`).
        """

        def fail(name: str, rule: str) -> TrainError:
            return TrainError(f"--{name.replace('_', '-')} must be {rule} (got {getattr(self, name)!r:.40})")

        def choice(name: str, options) -> None:
            if getattr(self, name) not in options:
                raise fail(name, "one of " + ", ".join(map(str, options)))

        for name in ("data", "out", "device"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise fail(name, "a non-empty string")
        choice("recipe", list(RECIPES))
        choice("variant", VARIANTS)
        choice("optimizer", ["sgd", "adamw"])
        choice("schedule", ["cosine", "step"])
        choice("amp", ["none", "bf16", "fp16"])
        if self.augment is not None:
            choice("augment", list(AUGMENTATIONS))
        checks = [  # (name, integer, optional, ok, rule)
            ("num_classes", True, True, lambda v: v >= 1, "an integer >= 1"),
            ("image_size", True, True, lambda v: v >= 8, "an integer >= 8"),
            ("epochs", True, False, lambda v: v >= 1, "an integer >= 1"),
            ("batch_size", True, False, lambda v: v >= 1, "an integer >= 1"),
            ("lr", False, False, lambda v: v > 0, "a finite number > 0"),
            ("momentum", False, False, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("weight_decay", False, False, lambda v: v >= 0, "a finite number >= 0"),
            ("warmup_epochs", False, False, lambda v: v >= 0, "a finite number >= 0"),
            ("step_size", True, False, lambda v: v >= 1, "an integer >= 1"),
            ("gamma", False, False, lambda v: 0 < v <= 1, "a number in (0, 1]"),
            ("label_smoothing", False, False, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("dropout", False, False, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("seed", True, False, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
            ("workers", True, False, lambda v: v >= 0, "an integer >= 0"),
            ("synthetic_train_per_class", True, True, lambda v: v >= 1, "an integer >= 1"),
            ("synthetic_val_per_class", True, True, lambda v: v >= 1, "an integer >= 1"),
        ]
        for name, integer, optional, ok, rule in checks:
            value = getattr(self, name)
            if value is None and optional:
                continue
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not _finite(value) or not ok(value):
                raise fail(name, rule)
        for name in ("channels_last", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise fail(name, "true or false")
        return self


# "default" is tuned for short runs (measured on the synthetic default, 4 epochs, batch 64, 64 px,
# 2 CPU cores; val top-1 at seeds 0/1/2): AdamW at 4e-4 with a short warm-up, cosine decay, label
# smoothing 0.1 and no dropout reaches 0.915/0.8925/0.905 (0.913/0.910/0.923 with the epoch seeds
# before SeedSequence). With those older seeds, dropout 0.2 underfit in 4 epochs (0.928/0.875/0.928). Before the fused optimizer, at seed 0: 2e-4 without smoothing 0.878; 5e-4 and
# 6e-4 overshoot in the first epoch. The paper's SGD at lr 0.01 barely leaves chance level in that
# budget (AlexNet has no normalization layers). "paper" is the 2012 recipe for long runs.
RECIPES = {
    "default": dict(
        optimizer="adamw",
        lr=4e-4,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=0.3,
        dropout=0.0,
        label_smoothing=0.1,
    ),
    "paper": dict(
        optimizer="sgd",
        lr=0.01,
        weight_decay=5e-4,
        schedule="step",
        warmup_epochs=0.0,
        dropout=0.5,
        label_smoothing=0.0,
    ),
}


def resolve_recipe(args: TrainArgs) -> TrainArgs:
    """Fill the knobs left unset (None) from the recipe, and the input size and augmentation from
    the data and variant: a checkpoint records what the run used, not "the default"."""
    if args.recipe not in RECIPES:
        raise TrainError(f"unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}")
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size is None and args.variant in VARIANTS and isinstance(args.data, str):
        args.image_size = default_image_size(args.data, args.variant)  # else validate() names the bad value
    if args.augment is None and isinstance(args.image_size, int) and isinstance(args.data, str):
        args.augment = default_augment(data_kind(args.data), args.image_size)
    return args


def recipe_values(knob: str) -> str:
    """Each recipe's value of `knob` for help texts: "default 0.0004, paper 0.01"."""
    return ", ".join(
        f"{name} {values[knob]:g}" if isinstance(values[knob], float) else f"{name} {values[knob]}"
        for name, values in RECIPES.items()
    )


# The numbers of one metrics row (one per epoch: history, metrics.jsonl, curves.png).
ROW_KEYS = (
    "epoch", "epochs", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "images_per_s", "seconds",
)  # fmt: skip


@dataclass
class TrainState:
    """A checkpoint's "training" section, typed. On disk it is `to_dict()`: a plain dict with these
    keys (the format of every checkpoint so far). best.pth leaves out optimizer and scaler."""

    epoch: int  # epochs completed: the next one to run, 0-based
    best_top1: float  # the best val top-1 so far (-1.0 before any epoch)
    history: list[dict[str, float]]  # one metrics row per completed epoch (ROW_KEYS)
    args: TrainArgs  # the run's resolved arguments: --resume continues with these
    optimizer: dict[str, Any] | None = None  # optimizer.state_dict(); the lr schedule is a function of the step
    scaler: dict[str, Any] | None = None  # GradScaler.state_dict() (fp16 loss scale)

    def to_dict(self, resumable: bool = True) -> dict[str, Any]:
        data = {"epoch": self.epoch, "best_top1": self.best_top1, "history": self.history, "args": self.args.to_dict()}
        if resumable:
            data.update(optimizer=self.optimizer, scaler=self.scaler)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> TrainState:
        """Check a stored section (untrusted input): TrainError naming the bad field, on one line."""
        if not isinstance(data, dict):
            raise TrainError(f"{source}: its training section is a {type(data).__name__}, not a dict")
        try:
            args = TrainArgs(**data["args"])
        except (TypeError, KeyError) as exc:
            raise TrainError(f"{source}: its stored training arguments are not this version's ({exc})") from exc
        args.validate()  # the same checks as the flags
        epoch, best, history = data.get("epoch"), data.get("best_top1"), data.get("history")
        if not _is_number(epoch, integer=True) or not 0 <= epoch <= args.epochs:
            raise TrainError(
                f"{source}: its training epoch must be an integer in [0, {args.epochs}], got {epoch!r:.40}"
            )
        if not _is_number(best) or not -1 <= best <= 1:
            raise TrainError(f"{source}: its best_top1 must be a number in [-1, 1], got {best!r:.40}")
        if not isinstance(history, list) or len(history) > epoch or not all(map(_is_row, history)):
            raise TrainError(
                f"{source}: its history must be a list of at most {epoch} metrics rows ({', '.join(ROW_KEYS)})"
            )
        for key in ("optimizer", "scaler"):
            if not isinstance(data.get(key, {}), dict):
                raise TrainError(f"{source}: its {key} state must be a dict, got {type(data[key]).__name__}")
        rows = [{key: row[key] for key in ROW_KEYS} for row in history]  # only numbers reach metrics.jsonl
        return cls(epoch, float(best), rows, args, data.get("optimizer"), data.get("scaler"))


def _finite(value: int | float) -> bool:
    """math.isfinite, without its OverflowError on an int too large for a float (a stored value may be one)."""
    return isinstance(value, int) or math.isfinite(value)


def _is_number(value: Any, integer: bool = False) -> bool:
    kinds = (int,) if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and _finite(value)


def _is_row(row: Any) -> bool:
    return isinstance(row, dict) and all(_is_number(row.get(key)) for key in ROW_KEYS)
