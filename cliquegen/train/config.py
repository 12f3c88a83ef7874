"""A training run's settings and result, and the names of the files a run folder holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..spec.model import Spec
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
    "num_classes", "finetune",
)  # fmt: skip


#: Columns of metrics.csv, one row per epoch (also the keys of metrics.json's history).
HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_top5", "seconds",
)  # fmt: skip


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
        return self.metrics["test_accuracy"]

    @property
    def best_accuracy(self) -> float:
        return self.metrics["best"]["test_accuracy"]
