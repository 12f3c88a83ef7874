"""A training run's settings (as given, and resolved against the recipe), its identity and
result, and the names of the files a run folder holds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.sets import AUGMENTATIONS
from ..errors import UsageError
from ..spec.model import Spec
from .recipes import ADAMW_LR, DEFAULT_RECIPE, OPTIMIZERS, SCHEDULES, get_recipe
from .recipes import milestones as milestones

LAST, BEST, METRICS, METRICS_CSV, CURVES = "last.pt", "best.pt", "metrics.json", "metrics.csv", "curves.png"


BEST_SAFETENSORS = "best.safetensors"


TENSORBOARD = "tensorboard"


#: Files of a run: a new run refuses a folder that holds any of them (unless forced).
RUN_FILES = (LAST, BEST, BEST_SAFETENSORS, METRICS, METRICS_CSV, CURVES)


#: Settings that must not change when a run is resumed.
RESUME_KEYS = (
    "spec", "data", "recipe", "epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer",
    "schedule", "milestones", "warmup", "label_smoothing", "augment", "seed", "subset", "amp",
    "num_classes", "finetune", "loss", "patch_size", "patches_per_image",
)  # fmt: skip


#: Columns of metrics.csv, one row per epoch (also the keys of metrics.json's history).
HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_top5", "seconds",
)  # fmt: skip


#: Columns of a super-resolution run's metrics.csv: the validation images' PSNR / SSIM on Y
#: (and PSNR on RGB), bicubic's on the same images beside them.
SR_HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "test_loss", "test_psnr_y", "test_ssim_y", "test_psnr_rgb",
    "bicubic_psnr_y", "bicubic_ssim_y", "seconds",
)  # fmt: skip

#: Super-resolution losses (``--loss``).
LOSSES = ("l1", "l2")


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """One training run.  ``None`` means: the recipe's value."""

    spec: str | Spec  # a shipped name or spec path, or a Spec (`train --set` passes its variant)
    data: str
    out: str
    epochs: int | None = None
    recipe: str | None = None  # paper-cifar (default) or paper-imagenet
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    optimizer: str | None = None  # sgd, nesterov, adamw
    schedule: str | None = None  # step, cosine
    warmup: int = 0  # epochs of linear warmup
    label_smoothing: float = 0.0
    augment: str | None = None  # none, standard
    seed: int = 0
    workers: int = 0
    resume: bool = False
    force: bool = False  # replace an earlier run in ``out``
    subset: int | None = None  # use only the first N training and N test images
    stop_after: int | None = None  # end this run once this many epochs are done (resume later)
    download: bool = False
    finetune: str | None = None  # start from these weights (a new classifier if classes differ)
    num_classes: int | None = None  # replace the spec's num_classes
    amp: str | None = None  # bf16, fp16
    device: str = "auto"  # auto, cpu, cuda
    compile: bool = False
    tensorboard: bool = False
    safetensors: bool = False  # also write best.safetensors (the weights, with info as metadata)
    root: str | None = None  # writes stay inside this folder (default: out; a sweep gives its --out)
    loss: str | None = None  # super-resolution: l1 (default) or l2
    patch_size: int | None = None  # super-resolution: training patches' side in HR pixels
    patches_per_image: int | None = None  # super-resolution: an epoch's patches of each image


@dataclass
class TrainResult:
    """What a run produced: its folder, its metrics (those of metrics.json) and checkpoints."""

    out: Path
    metrics: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> Path:
        return self.out / LAST

    @property
    def best(self) -> Path:
        return self.out / BEST

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    @property
    def best_accuracy(self) -> float | None:
        return self.metrics["best"].get("test_accuracy")


def run_identity(spec_sha256: str | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a run trained: the sha256 of its spec's text and every setting that shapes it.

    A run folder is continued (``--resume``) or taken as finished by a sweep only for a run of
    the same identity, never by its spec's name alone; ``last.pt`` (its ``info`` and
    ``settings``) and ``metrics.json`` record it."""
    return {"spec_sha256": spec_sha256} | {key: settings.get(key) for key in RESUME_KEYS}


def identity_changes(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    """How the ``recorded`` identity differs from the ``wanted`` one, for a message ("" when
    they are the same): the other spec version, then each other setting as the run had it."""
    changed = [key for key in wanted if recorded.get(key) != wanted[key]]
    parts = []
    if "spec_sha256" in changed:
        old = recorded.get("spec_sha256")
        parts.append(
            f"another version of the spec {wanted.get('spec')} (sha256 {str(old)[:12]}, "
            f"now {str(wanted['spec_sha256'])[:12]})"
            if isinstance(old, str)
            else "no record of which spec file it trained (an older cliquegen wrote it)"
        )
    settings = [f"{key}={_short(recorded.get(key))}" for key in changed if key != "spec_sha256"]
    if settings:
        parts.append(", ".join(settings))
    return "; ".join(parts)


class DivergedError(UsageError):
    """The loss or the weights of a run stopped being finite numbers; the run folder keeps the
    files of the last finite epoch."""


def resolve_settings(
    config: TrainConfig, spec_name: str, world_size: int = 1, default_recipe: str | None = None
) -> dict[str, Any]:
    """The run's settings: the config's values, the recipe's where the config has None
    (``default_recipe`` when the config names none).  ``loss`` and ``patch_size`` are left as
    given: the task settles them."""
    recipe = get_recipe(config.recipe, default_recipe or DEFAULT_RECIPE)
    optimizer = config.optimizer or recipe.optimizer
    adaptive = optimizer in ("adamw", "adam") and optimizer != recipe.optimizer
    default_lr = ADAMW_LR if adaptive else recipe.lr
    epochs = config.epochs if config.epochs is not None else recipe.epochs_for(config.data)
    settings = {
        "spec": spec_name,
        "data": config.data,
        "recipe": recipe.name,
        "epochs": epochs,
        "batch_size": config.batch_size if config.batch_size is not None else recipe.batch_size,
        "lr": config.lr if config.lr is not None else default_lr,
        "momentum": config.momentum if config.momentum is not None else recipe.momentum,
        "weight_decay": config.weight_decay if config.weight_decay is not None else recipe.weight_decay,
        "optimizer": optimizer,
        "schedule": config.schedule or recipe.schedule,
        "milestones": recipe.milestones(epochs),
        "warmup": config.warmup,
        "label_smoothing": config.label_smoothing,
        "augment": config.augment or recipe.augment,
        "seed": config.seed,
        "subset": config.subset,
        "amp": config.amp,
        "num_classes": config.num_classes,
        "finetune": config.finetune,
        "loss": config.loss,
        "patch_size": config.patch_size,
        "patches_per_image": config.patches_per_image,
    }
    _check(settings, config, world_size)
    return settings


def _check(settings: dict[str, Any], config: TrainConfig, world_size: int) -> None:
    """Refuse settings torch would reject late, or accept and train wrongly."""

    def number(name: str, value: float, ok: bool, need: str) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and ok):
            raise UsageError(f"--{name.replace('_', '-')} must be {need}, got {value!r}")

    number("epochs", settings["epochs"], settings["epochs"] >= 1, "at least 1")
    number("batch_size", settings["batch_size"], settings["batch_size"] >= 1, "at least 1")
    batch = settings["batch_size"]
    if batch < world_size or batch % world_size:
        raise UsageError(
            f"--batch-size {batch} is the global batch and must be a multiple of the {world_size} processes"
        )
    number("lr", settings["lr"], settings["lr"] > 0, "a positive number")
    number("momentum", settings["momentum"], 0 <= settings["momentum"] < 1, "in [0, 1)")
    number("weight_decay", settings["weight_decay"], settings["weight_decay"] >= 0, "at least 0")
    number("warmup", settings["warmup"], 0 <= settings["warmup"] < settings["epochs"], "in [0, epochs)")
    ls = settings["label_smoothing"]
    number("label_smoothing", ls, 0 <= ls < 1, "in [0, 1)")
    number("workers", config.workers, config.workers >= 0, "at least 0")
    for name in ("subset", "stop_after", "num_classes", "patch_size", "patches_per_image"):
        value = getattr(config, name)
        if value is not None:
            number(name, value, value >= 1, "at least 1")
    for name, value, choices in (
        ("optimizer", settings["optimizer"], OPTIMIZERS),
        ("schedule", settings["schedule"], SCHEDULES),
        ("augment", settings["augment"], AUGMENTATIONS),
        ("amp", settings["amp"] or "bf16", tuple(AMP_DTYPES)),  # None: full precision
        ("loss", settings["loss"] or "l1", LOSSES),
    ):
        if value not in choices:
            raise UsageError(f"unknown --{name} {value!r}; choose one of {', '.join(choices)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."
