"""The ``--compare`` figure of super-resolution: crops of bicubic, the model and (when known) the
high-resolution original side by side, with their PSNR and SSIM, one row per image (drawn on
:mod:`cliquegen.draw.figure`'s plumbing).

The crop is where the model's output and bicubic's differ most (the largest sum of absolute
differences over a ``crop`` x ``crop`` window), so the figure shows what the model changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..draw.figure import (
    STYLE,
    figure_style,
    log_scale,
    new_figure,
    require_matplotlib,
    save_figure,
    whole_ticks,
)
from ..errors import UsageError
from .sr_metrics import sr_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Side of the crops, in output pixels.
CROP = 96
#: Inches per panel.
PANEL = 2.2


@dataclass(frozen=True)
class Panel:
    """One crop: its label, its pixels ((h, w) or (h, w, 3) uint8) and its scores against the
    original (None without one)."""

    label: str
    pixels: np.ndarray
    psnr_y: float | None = None
    ssim_y: float | None = None


@dataclass(frozen=True)
class Comparison:
    """One row of the figure: the image's name, the whole model output (for the overview), the
    crop's box (top, left, height, width) and the panels."""

    name: str
    overview: np.ndarray
    box: tuple[int, int, int, int]
    panels: list[Panel]


def _hwc(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise UsageError(f"{what}: expected an 8-bit (H, W) or (H, W, C) image")
    return array if array.ndim == 3 else array[:, :, None]


def busiest_window(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window where ``a`` and ``b`` (H, W, C) differ most
    (sum of absolute differences); the first such window, reading rows top to bottom."""
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64)).sum(axis=2)
    table = np.zeros((diff.shape[0] + 1, diff.shape[1] + 1), np.int64)
    table[1:, 1:] = diff.cumsum(0).cumsum(1)
    sums = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def compare(
    name: str,
    bicubic: np.ndarray,
    model: np.ndarray,
    hr: np.ndarray | None,
    scale: int,
    *,
    crop: int = CROP,
    label: str = "model",
) -> Comparison:
    """The row of one image: ``bicubic`` and ``model`` are the two upscaled images, ``hr`` the
    original of the same size (or None); all 8-bit.  PSNR and SSIM are the whole image's, on Y
    with ``scale`` pixels shaved (:func:`cliquegen.train.sr_metrics.sr_metrics`)."""
    bicubic, model = _hwc(bicubic, "bicubic"), _hwc(model, label)
    images = [("bicubic", bicubic), (label, model)]
    if hr is not None:
        hr = _hwc(hr, "HR")
        images.append(("HR", hr))
    shapes = {image.shape for _, image in images}
    if len(shapes) != 1:
        raise UsageError(f"{name}: the images to compare differ in size: {sorted(shapes)}")
    height, width = model.shape[:2]
    side = min(crop, height, width)
    top, left = busiest_window(model, bicubic, side)
    panels = []
    for tag, image in images:
        scores = sr_metrics(image, hr, scale) if hr is not None and tag != "HR" else None
        pixels = image[top : top + side, left : left + side]
        panels.append(
            Panel(
                tag,
                pixels[:, :, 0] if pixels.shape[2] == 1 else pixels,
                None if scores is None else scores.psnr_y,
                None if scores is None else scores.ssim_y,
            )
        )
    overview = model[:, :, 0] if model.shape[2] == 1 else model
    return Comparison(name, overview, (top, left, side, side), panels)


def _caption(panel: Panel) -> str:
    if panel.psnr_y is None:
        return panel.label
    return f"{panel.label}\n{panel.psnr_y:.2f} dB / {panel.ssim_y:.4f}"


def draw_compare(comparisons: Sequence[Comparison]) -> Figure:
    """One row per image: the model's whole output with the crop marked, then the crops; PSNR
    (dB) / SSIM on Y under each crop when the original is known."""
    import matplotlib
    from matplotlib.patches import Rectangle

    if not comparisons:
        raise UsageError("nothing to compare")
    columns = 1 + max(len(c.panels) for c in comparisons)
    with matplotlib.rc_context(STYLE):
        figure = new_figure(PANEL * columns, (PANEL + 0.5) * len(comparisons))
        grid = figure.subplots(len(comparisons), columns, squeeze=False)
        for row, comparison in zip(grid, comparisons, strict=True):
            grey = {"cmap": "gray", "vmin": 0, "vmax": 255}
            row[0].imshow(comparison.overview, **(grey if comparison.overview.ndim == 2 else {}))
            top, left, height, width = comparison.box
            row[0].add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, color="red", lw=1))
            row[0].set_title(comparison.name)
            for axes, panel in zip(row[1:], comparison.panels, strict=False):
                options = grey if panel.pixels.ndim == 2 else {}
                axes.imshow(panel.pixels, interpolation="nearest", **options)
                axes.set_title(_caption(panel))
            for axes in row:
                axes.set_axis_off()
        if any(panel.psnr_y is not None for c in comparisons for panel in c.panels):
            figure.suptitle("PSNR / SSIM on Y, whole image, border shaved by the scale")
        return figure


def draw_sr_history(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """A super-resolution run's loss (train and validation, log scale) and validation PSNR (Y)
    per epoch, bicubic's PSNR on the same images as a dashed line."""
    with figure_style():
        figure = new_figure(10, 4)
        loss_axes, psnr_axes = figure.subplots(1, 2)
        epochs = [record["epoch"] for record in history]
        losses = []
        for key, label in (("train_loss", "train"), ("test_loss", "validation")):
            values = [record[key] for record in history]
            loss_axes.plot(epochs, values, marker=".", label=label)
            losses += values
        log_scale(loss_axes, losses)
        loss_axes.set(xlabel="epoch", ylabel="loss (log scale)", title="loss")
        psnr_axes.plot(epochs, [r["test_psnr_y"] for r in history], marker=".", label="model")
        psnr_axes.plot(epochs, [r["bicubic_psnr_y"] for r in history], linestyle="--", label="bicubic")
        psnr_axes.set(xlabel="epoch", ylabel="PSNR on Y (dB)", title="validation PSNR")
        for axes in (loss_axes, psnr_axes):
            whole_ticks(axes.xaxis)
            axes.grid(alpha=0.3)
            axes.legend()
        figure.suptitle(title)
        return figure


def plot_sr_curves(history: list[dict[str, Any]], path: Path, title: str, root: Path | None = None) -> None:
    """``curves.png`` of a super-resolution run (:func:`draw_sr_history`), written inside ``root``."""
    require_matplotlib("curves.png")
    save_figure(draw_sr_history(history, title), path, root=root)
