"""Training recipes: the authors' settings as named defaults that every flag can override.

- ``paper-cifar`` (the default): the authors' TensorFlow CIFAR/SVHN script.  SGD with Nesterov
  momentum 0.9, lr 0.1, weight decay 1e-4, batch 64, 300 epochs (40 for SVHN), lr / 10 after
  50% and 75% of the epochs, no augmentation.
- ``paper-imagenet``: the authors' PyTorch ImageNet script.  SGD with momentum 0.9, lr 0.1
  divided by 10 every 30 epochs, 100 epochs, batch 160, weight decay 1e-4, random-resized
  crops and flips (test: resize 256, centre crop 224).

- ``sr``: super-resolution as EDSR trains it (the default for specs with an image output).
  Adam (beta1 0.9, beta2 0.999), lr 1e-4 halved after 200 of 300 epochs, batch 16, no weight
  decay, flips and 90-degree rotations.  An epoch is ``--patches-per-image`` patches of every
  training image (default 2000; EDSR's epoch over DIV2K is 20 per image).

docs/training.md cites the source of each value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UsageError

OPTIMIZERS = ("sgd", "nesterov", "adamw", "adam")
SCHEDULES = ("step", "cosine", "halve")
ADAMW_LR = 1e-3  # AdamW's usual lr, used when --optimizer adamw comes without --lr


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    epochs: int
    schedule: str
    augment: str
    step_every: int | None = None  # step schedule: lr / 10 every N epochs; None: at 50% and 75%
    halve_at: tuple[int, ...] | None = None  # halve schedule: the epochs after which lr / 2
    svhn_epochs: int | None = None  # the epochs for svhn:DIR data, when they differ

    def epochs_for(self, data: str) -> int:
        if self.svhn_epochs is not None and data.startswith("svhn:"):
            return self.svhn_epochs
        return self.epochs

    def milestones(self, epochs: int) -> list[int]:
        """Epochs after which the step schedule divides the learning rate by 10.

        Milestones under 1 are dropped, so a run too short for a drop keeps the base lr."""
        if self.halve_at is not None:
            return [m for m in self.halve_at if m < epochs]
        if self.step_every is not None:
            return list(range(self.step_every, epochs, self.step_every))
        return [m for m in (epochs // 2, (3 * epochs) // 4) if m >= 1]


RECIPES = {
    "paper-cifar": Recipe(
        name="paper-cifar",
        optimizer="nesterov",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=64,
        epochs=300,
        svhn_epochs=40,
        schedule="step",
        augment="none",
    ),
    "paper-imagenet": Recipe(
        name="paper-imagenet",
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        batch_size=160,
        epochs=100,
        schedule="step",
        step_every=30,
        augment="standard",
    ),
    "sr": Recipe(
        name="sr",
        optimizer="adam",
        lr=1e-4,
        momentum=0.9,  # Adam's beta1
        weight_decay=0.0,
        batch_size=16,
        epochs=300,
        schedule="halve",
        halve_at=(200,),
        augment="standard",
    ),
}
DEFAULT_RECIPE = "paper-cifar"
#: The recipe of specs with an image output when none is named.
DEFAULT_SR_RECIPE = "sr"


def get_recipe(name: str | None, default: str = DEFAULT_RECIPE) -> Recipe:
    name = name or default
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def milestones(epochs: int) -> list[int]:
    """The paper's CIFAR milestones: lr / 10 after 50% and 75% of the epochs (at least epoch 1)."""
    return RECIPES["paper-cifar"].milestones(epochs)


def make_optimizer(
    kind: str, parameters, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if kind in ("sgd", "nesterov"):
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=kind == "nesterov"
        )
    if kind == "adam":  # momentum is beta1
        return torch.optim.Adam(
            parameters, lr=lr, betas=(momentum, 0.999), eps=1e-8, weight_decay=weight_decay
        )
    if kind == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer {kind!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, *, epochs: int, warmup: int, milestones: list[int]
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch.  ``warmup`` epochs rise linearly to the base lr first; the
    step milestones and the cosine period count from the start of the run / the warmup's end."""
    if kind in ("step", "halve"):
        main: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [m - warmup for m in milestones if m > warmup], gamma=0.1 if kind == "step" else 0.5
        )
    elif kind == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup))
    else:
        raise UsageError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup == 0:
        return main
    rise = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, main], milestones=[warmup])


def make_optimization(
    settings: dict, parameters
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and its per-epoch scheduler from a run's resolved settings."""
    optimizer = make_optimizer(
        settings["optimizer"],
        parameters,
        lr=settings["lr"],
        momentum=settings["momentum"],
        weight_decay=settings["weight_decay"],
    )
    scheduler = make_scheduler(
        optimizer,
        settings["schedule"],
        epochs=settings["epochs"],
        warmup=settings["warmup"],
        milestones=settings["milestones"],
    )
    return optimizer, scheduler
