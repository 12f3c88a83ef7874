"""Super-resolution as a training task (:mod:`cliquegen.train.task` has the seam).

The data are random HR patches of a folder's images and their bicubic LR inputs
(:func:`cliquegen.data.sr.sr_folder_data`); the loss is L1 (``--loss l2``: mean squared error)
on pixels in [0, 1].  Each epoch validates on the held-out images whole (mod-cropped to the
scale): the model's output rounded to 8 bits, scored as published tables score it (PSNR and
SSIM on Y, ``scale`` pixels shaved; PSNR on RGB), bicubic's scores on the same images beside
it.  The best checkpoint is the one with the highest PSNR (Y).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from ..checkpoint.info import PIXEL_RANGE, model_info
from ..data.resize import bicubic_degrade
from ..data.sr import PATCHES_PER_IMAGE, SRImages, sr_folder_data
from ..errors import UsageError
from ..spec.network import ImageSpec
from .config import SR_HISTORY_COLUMNS, TrainConfig, resolve_settings
from .recipes import DEFAULT_SR_RECIPE
from .sr_evaluate import bicubic_upscale, score, upscale_image
from .sr_figures import plot_sr_curves
from .task import Classification
from .upscale import size_multiple

#: The training patch's side by default, in LR pixels (EDSR's 48; HR: 48 x scale).
LR_PATCH = 48


class SuperResolution:
    """LR images to HR images ``scale`` times larger."""

    name = "super-resolution"
    default_recipe = DEFAULT_SR_RECIPE
    columns = SR_HISTORY_COLUMNS
    best_key = "test_psnr_y"
    items = "train patches an epoch / {test} validation images"
    measures = "PSNR"
    plot = staticmethod(plot_sr_curves)

    def __init__(self, spec: ImageSpec):
        self.spec = spec
        self.scale = spec.output.scale
        if self.scale < 2:
            raise UsageError(
                f"spec {spec.name!r} keeps the image size (output scale {self.scale}): training "
                "learns super-resolution, which needs an output scale of 2 or more"
            )
        channels = spec.output.channels or spec.input.channels
        if spec.input.channels not in (1, 3) or channels != spec.input.channels:
            raise UsageError(
                f"spec {spec.name!r} maps {spec.input.channels} to {channels} channels: "
                "super-resolution trains RGB-to-RGB or grey-to-grey networks"
            )
        self.multiple = size_multiple(spec)
        self.channels = spec.input.channels
        self._bicubic: dict[int, tuple[float, float]] = {}

    def settle(self, settings: dict[str, Any]) -> None:
        """The loss, the patch size and the epoch's patches per image: given, or the defaults."""
        settings["loss"] = settings["loss"] or "l1"
        settings["patches_per_image"] = settings["patches_per_image"] or PATCHES_PER_IMAGE
        if settings["patch_size"] is None:
            settings["patch_size"] = LR_PATCH * self.scale
        patch = settings["patch_size"]
        if patch % (self.scale * self.multiple):
            step = self.scale * self.multiple
            raise UsageError(
                f"--patch-size {patch} must be a multiple of {step} (the scale {self.scale}"
                + (f" times the network's size multiple {self.multiple})" if self.multiple > 1 else ")")
            )
        if settings["num_classes"] is not None:
            raise UsageError("--num-classes is for classification: an image network has no classes")
        if settings["label_smoothing"]:
            raise UsageError("--label-smoothing is for classification")

    def load(self, config: TrainConfig, spec: ImageSpec, base_spec: ImageSpec, settings: dict[str, Any]):
        kind, _, path = config.data.partition(":")
        if kind != "folder" or not path:
            raise UsageError(
                "super-resolution trains on a folder of high-resolution images: "
                f"--data folder:DIR, not {config.data!r}"
            )
        data = sr_folder_data(
            path, self.scale, settings["patch_size"], channels=spec.input.channels,
            patches_per_image=settings["patches_per_image"], augment=settings["augment"] == "standard",
        )  # fmt: skip
        info = model_info(
            spec, data=data.name, task=self.name, scale=self.scale, pixel_range=list(PIXEL_RANGE)
        )
        return data, data.train, data.test, info

    def criterion(self, settings: dict[str, Any]) -> nn.Module:
        return nn.L1Loss() if settings["loss"] == "l1" else nn.MSELoss()

    def correct(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.new_zeros((), dtype=torch.float64)  # nothing to count

    def train_fields(self, totals: torch.Tensor) -> dict[str, float]:
        return {}

    def validate(self, run) -> dict[str, float]:
        """This rank's share of the images scored, summed over the ranks, averaged."""
        ctx = run.ctx
        images, indices = _images(run.test_set)
        sums = torch.zeros(7, dtype=torch.float64)  # loss, psnr y, ssim y, psnr rgb, bicubic 2, count
        model = run.model
        for index in indices[ctx.rank :: ctx.world_size]:
            hr = images.hr(index)
            lr = bicubic_degrade(hr.float() / 255.0, self.scale)
            sr = upscale_image(model, lr, self.scale, self.multiple, self.channels).float()
            loss = float(run.criterion(sr, hr.float() / 255.0))
            scores = score(sr, hr, self.scale, images.files[index])
            if index not in self._bicubic:  # the same every epoch
                lr64 = bicubic_degrade(hr.double() / 255.0, self.scale)
                base = score(bicubic_upscale(lr64, self.scale), hr, self.scale, images.files[index])
                self._bicubic[index] = (_finite(base.psnr_y), base.ssim_y)
            sums += torch.tensor(
                [
                    loss,
                    _finite(scores.psnr_y),
                    scores.ssim_y,
                    _finite(scores.psnr_rgb),
                    *self._bicubic[index],
                    1.0,
                ],
                dtype=torch.float64,
            )
        if ctx.distributed:
            sums = sums.to(ctx.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        mean = (sums[:6] / sums[6]).tolist()
        return dict(zip(SR_HISTORY_COLUMNS[3:9], mean, strict=True))

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        last = history[-1] if history else {}
        keys = ("test_psnr_y", "test_ssim_y", "test_psnr_rgb", "bicubic_psnr_y", "bicubic_ssim_y")
        return {"task": self.name, "scale": self.scale} | {key: last.get(key) for key in keys}

    def line(self, record: dict[str, Any]) -> str:
        return (
            f"val loss {record['test_loss']:.4f}  PSNR (Y) {record['test_psnr_y']:.2f} dB  SSIM (Y) "
            f"{record['test_ssim_y']:.4f}  (bicubic {record['bicubic_psnr_y']:.2f} dB / "
            f"{record['bicubic_ssim_y']:.4f})"
        )

    def final_line(self, history: list[dict[str, Any]], best: dict[str, Any]) -> str:
        last = history[-1]
        gain = last["test_psnr_y"] - last["bicubic_psnr_y"]
        return (
            f"PSNR (Y) {last['test_psnr_y']:.2f} dB ({gain:+.2f} dB over bicubic's "
            f"{last['bicubic_psnr_y']:.2f}) after {last['epoch']} epoch{'s' * (last['epoch'] != 1)} "
            f"(best {best['test_psnr_y']:.2f} dB at epoch {best['epoch']})"
        )


#: A PSNR for identical images (infinite), so the sums and metrics.json stay finite.
PSNR_CAP = 100.0


def _finite(psnr: float) -> float:
    return psnr if math.isfinite(psnr) else PSNR_CAP


def _images(test_set) -> tuple[SRImages, list[int]]:
    if isinstance(test_set, Subset):
        return test_set.dataset, list(test_set.indices)
    return test_set, list(range(len(test_set)))


def task_for(spec) -> SuperResolution | Classification:
    """The task of a spec: super-resolution for an image output, else classification."""
    return SuperResolution(spec) if isinstance(spec, ImageSpec) else Classification()


def task_settings(config: TrainConfig, spec, world_size: int = 1) -> dict[str, Any]:
    """The run's settings (:func:`~cliquegen.train.config.resolve_settings`) with its task's
    default recipe, loss and patch size, checked for the task."""
    task = task_for(spec)
    settings = resolve_settings(config, spec.name, world_size, task.default_recipe)
    task.settle(settings)
    return settings


__all__ = ["LR_PATCH", "PSNR_CAP", "SuperResolution", "size_multiple", "task_for"]
