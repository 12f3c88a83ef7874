"""What a training run learns: the seam between the training loop and its task.

A task chooses the data, the loss, what a training step counts beside the loss, how an epoch
is validated, which score makes a checkpoint the best, and how the epoch is reported.
:class:`Classification` is the default; :mod:`cliquegen.train.sr_task` has super-resolution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..checkpoint.info import ModelInfo, model_info
from ..data.sets import load_data
from ..errors import UsageError
from ..spec.model import Spec
from .config import HISTORY_COLUMNS, TrainConfig
from .evaluate import evaluate_model
from .figures import plot_curves
from .recipes import DEFAULT_RECIPE


class Classification:
    """Images to classes: cross-entropy, top-1 / top-5 on the test split."""

    name = "classification"
    default_recipe = DEFAULT_RECIPE
    columns = HISTORY_COLUMNS
    best_key = "test_accuracy"
    items = "train / {test} test images"
    measures = "accuracy"
    plot = staticmethod(plot_curves)

    def settle(self, settings: dict[str, Any]) -> None:
        """Refuse the settings of other tasks."""
        for key in ("loss", "patch_size", "patches_per_image"):
            if settings[key] is not None:
                raise UsageError(
                    f"--{key.replace('_', '-')} is for specs with an image output (super-resolution)"
                )

    def load(self, config: TrainConfig, spec: Spec, base_spec: Spec, settings: dict[str, Any]):
        """The data and the model's info."""
        data = load_data(config.data, spec, augment=settings["augment"])
        info = model_info(
            spec if config.num_classes is None else base_spec,
            classes=data.classes,
            mean=data.mean,
            std=data.std,
            data=data.name,
            eval_transform="centre-crop"
            if data.kind == "folder" and settings["augment"] == "standard"
            else "resize",
            overrides={"num_classes": config.num_classes} if config.num_classes is not None else {},
            task="classification",
        )
        return data, data.train, data.test, info

    def criterion(self, settings: dict[str, Any]) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=settings["label_smoothing"])

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.detach().argmax(dim=1) == targets).sum().double()

    def train_fields(self, totals: torch.Tensor) -> dict[str, float]:
        return {"train_accuracy": float(totals[1] / totals[2])}

    def validate(self, run) -> dict[str, float]:
        ctx = run.ctx
        scores = evaluate_model(
            run.model, run.test_set, ctx.device, run.settings["batch_size"] // ctx.world_size,
            run.config.workers, rank=ctx.rank, world_size=ctx.world_size, amp=run.config.amp,
        )  # fmt: skip
        return {"test_loss": scores["loss"], "test_accuracy": scores["top1"], "test_top5": scores["top5"]}

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Entries of metrics.json beside the history."""
        last = history[-1] if history else {}
        return {
            "task": self.name,
            "test_accuracy": last.get("test_accuracy"),
            "test_top5": last.get("test_top5"),
        }

    def line(self, record: dict[str, Any]) -> str:
        return (
            f"train {100 * record['train_accuracy']:.2f}%  test loss {record['test_loss']:.4f}  top-1 "
            f"{100 * record['test_accuracy']:.2f}%  top-5 {100 * record['test_top5']:.2f}%"
        )

    def final_line(self, history: list[dict[str, Any]], best: dict[str, Any]) -> str:
        last = history[-1]
        return (
            f"test accuracy {100 * last['test_accuracy']:.2f}% after {last['epoch']} "
            f"epoch{'s' * (last['epoch'] != 1)} "
            f"(best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']})"
        )


def initial_best(task) -> dict[str, Any]:
    return {"epoch": 0, task.best_key: -1.0}


__all__ = ["Classification", "ModelInfo", "initial_best"]
