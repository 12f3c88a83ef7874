"""Figures of training runs and sweeps: a run's loss and accuracy (``curves.png``), the overlaid
curves of ``cliquegen plot``, a sweep's errors and sizes; all drawn on
:mod:`cliquegen.draw.figure`'s plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compiler.summary import millions
from ..draw.figure import figure_style, log_scale, new_figure, require_matplotlib, save_figure, whole_ticks
from .results import Curve, SpecResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: An epoch run at most this fraction of the previous epoch's learning rate starts a drop that
#: the curves mark (a step schedule's /10; not the small steps of a cosine schedule).
DROP = 0.5


def lr_drops(history: Sequence[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(epochs done when it drops, lr before, lr after) for each drop of the learning rate."""
    return [
        (before["epoch"], before["lr"], after["lr"])
        for before, after in zip(history, history[1:], strict=False)
        if after["lr"] <= DROP * before["lr"]
    ]


def draw_history(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """One run's loss (train and test, log scale) and accuracy (train, test top-1 and top-5) per
    epoch, each learning-rate drop marked where it happens."""
    with figure_style():
        figure = new_figure(10, 4)
        loss_axes, accuracy_axes = figure.subplots(1, 2)
        epochs = [record["epoch"] for record in history]
        losses = []
        for key, label in (("train_loss", "train"), ("test_loss", "test")):
            values = [record[key] for record in history]
            loss_axes.plot(epochs, values, marker=".", label=label)
            losses += values
        log_scale(loss_axes, losses)
        loss_axes.set(xlabel="epoch", ylabel="cross-entropy (log scale)", title="loss")
        for key, label in (
            ("train_accuracy", "train"),
            ("test_accuracy", "test top-1"),
            ("test_top5", "test top-5"),
        ):
            accuracy_axes.plot(epochs, [100 * record[key] for record in history], marker=".", label=label)
        accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
        drops = lr_drops(history)
        for axes in (loss_axes, accuracy_axes):
            whole_ticks(axes.xaxis)
            for epoch, _, _ in drops:
                axes.axvline(epoch, color="0.35", linestyle=":", linewidth=1)
            axes.grid(alpha=0.3)
            axes.legend()
        for epoch, before, after in drops:
            loss_axes.annotate(
                f"lr {before:g} \N{RIGHTWARDS ARROW} {after:g}",
                xy=(epoch, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=7,
                color="0.3",
            )
        figure.suptitle(title)
        return figure


def plot_curves(history: list[dict[str, Any]], path: Path, title: str, root: Path | None = None) -> None:
    """``curves.png`` of a run (:func:`draw_history`), written inside ``root``."""
    require_matplotlib("curves.png")
    save_figure(draw_history(history, title), path, root=root)


def draw_results(results: Sequence[SpecResult], title: str) -> Figure:
    """Top: final and best top-1 error per spec (mean, with the std over seeds as error bars),
    in the given order, as points: the specs are separate networks, not a trend; bottom: the
    specs' parameter counts."""
    with figure_style():
        n = len(results)
        figure = new_figure(max(4.5, 1.0 * n + 2.5), 5.2)
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
        x = list(range(n))
        sr = results[0].super_resolution  # PSNR (Y) instead of the error
        final_key, best_key = ("psnr_y", "best_psnr_y") if sr else ("final_error", "best_error")
        for attribute, label, shift, style in (
            (final_key, "final", -0.06, {"marker": "o"}),
            (best_key, "best", 0.06, {"marker": "s", "markerfacecolor": "white"}),
        ):
            means, stds = zip(*(result.mean_std(attribute) for result in results), strict=True)
            shifted = [xi + shift for xi in x]  # side by side, so the error bars do not cover each other
            top.errorbar(
                shifted,
                means,
                yerr=[s or 0.0 for s in stds],
                capsize=3,
                linestyle="none",
                label=f"{label} epoch",
                **style,
            )
            if attribute == final_key:
                for xi, mean in zip(shifted, means, strict=True):
                    top.annotate(
                        f"{mean:.2f}", (xi, mean), textcoords="offset points", xytext=(-8, 4), ha="right"
                    )
        seeds = {len(result.runs) for result in results}
        spread = "error bars: std over seeds" if max(seeds) > 1 else "one seed"
        if sr:
            bicubic = [result.mean_std("bicubic_psnr_y")[0] for result in results]
            top.plot(x, bicubic, linestyle="none", marker="_", markersize=14, color="0.4", label="bicubic")
        top.set_ylabel("validation PSNR on Y (dB)" if sr else "top-1 test error (%)")
        top.set_title(f"{title} ({spread})")
        top.set_xlim(-0.5, n - 0.5)
        top.grid(alpha=0.3)
        top.legend()
        params = [result.params for result in results]
        bars = bottom.bar(x, [p / 1e6 for p in params], color="0.7", width=0.5)
        bottom.bar_label(bars, [millions(p) for p in params], padding=2)
        bottom.set_ylabel("parameters (M)")
        bottom.set_ylim(0, max(params) / 1e6 * 1.35)
        bottom.set_xticks(x, [result.spec for result in results], rotation=20, ha="right")
        bottom.set_xlabel("spec")
        return figure


def draw_curves(curves: Sequence[Curve]) -> Figure:
    """Test error and training loss (log scale) per epoch, one line per run."""
    with figure_style():
        figure = new_figure(10, 4)
        error_axes, loss_axes = figure.subplots(1, 2)
        for curve in curves:
            error_axes.plot(curve.epochs, curve.test_error, marker=".", label=curve.label)
            loss_axes.plot(curve.epochs, curve.train_loss, marker=".", label=curve.label)
        error_axes.set(title="test error", xlabel="epoch", ylabel="top-1 test error (%)")
        log_scale(loss_axes, [loss for curve in curves for loss in curve.train_loss])
        loss_axes.set(title="training loss", xlabel="epoch", ylabel="cross-entropy (log scale)")
        for axes in (error_axes, loss_axes):
            axes.grid(alpha=0.3)
            whole_ticks(axes.xaxis)
        error_axes.legend(fontsize=8)
        return figure
