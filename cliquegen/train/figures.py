"""Figures of training runs and sweeps: error against size for a sweep, overlaid curves for
``cliquegen plot`` (drawn on :mod:`cliquegen.draw.figure`'s plumbing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_output
from ..draw.figure import STYLE, new_figure
from ..errors import import_extra
from .recipes import milestones as milestones
from .results import Curve, SpecResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _millions(n: float) -> str:
    return f"{n / 1e6:.3f}M"


def draw_results(results: Sequence[SpecResult], title: str) -> Figure:
    """Top: final and best top-1 error per spec (mean, with the std over seeds as error bars),
    in the given order; bottom: the specs' parameter counts."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        n = len(results)
        figure = new_figure(max(4.5, 1.0 * n + 2.5), 5.2)
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
        x = list(range(n))
        for attribute, label, shift, style in (
            ("final_error", "final", -0.06, {"marker": "o"}),
            ("best_error", "best", 0.06, {"marker": "s", "markerfacecolor": "white", "linestyle": "--"}),
        ):
            means, stds = zip(*(result.mean_std(attribute) for result in results), strict=True)
            shifted = [xi + shift for xi in x]  # side by side, so the error bars do not cover each other
            top.errorbar(
                shifted, means, yerr=[s or 0.0 for s in stds], capsize=3, label=f"{label} epoch", **style
            )
            if attribute == "final_error":
                for xi, mean in zip(shifted, means, strict=True):
                    top.annotate(
                        f"{mean:.2f}", (xi, mean), textcoords="offset points", xytext=(-8, 4), ha="right"
                    )
        seeds = {len(result.runs) for result in results}
        spread = "error bars: std over seeds" if max(seeds) > 1 else "one seed"
        top.set_ylabel("top-1 test error (%)")
        top.set_title(f"{title} ({spread})")
        top.grid(alpha=0.3)
        top.legend()
        params = [result.params for result in results]
        bars = bottom.bar(x, [p / 1e6 for p in params], color="0.7", width=0.5)
        bottom.bar_label(bars, [_millions(p) for p in params], padding=2)
        bottom.set_ylabel("parameters (M)")
        bottom.set_ylim(0, max(params) / 1e6 * 1.35)
        bottom.set_xticks(x, [result.spec for result in results], rotation=20, ha="right")
        bottom.set_xlabel("spec")
        return figure


def draw_curves(curves: Sequence[Curve]) -> Figure:
    """Test error and training loss per epoch, one line per run."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figure = new_figure(10, 4)
        error_axes, loss_axes = figure.subplots(1, 2)
        for curve in curves:
            error_axes.plot(curve.epochs, curve.test_error, marker=".", label=curve.label)
            loss_axes.plot(curve.epochs, curve.train_loss, marker=".", label=curve.label)
        error_axes.set(title="test error", xlabel="epoch", ylabel="top-1 test error (%)")
        loss_axes.set(title="training loss", xlabel="epoch", ylabel="cross-entropy (log scale)", yscale="log")
        for axes in (error_axes, loss_axes):
            axes.grid(alpha=0.3)
            axes.xaxis.get_major_locator().set_params(integer=True)
        error_axes.legend(fontsize=8)
        return figure


def plot_curves(history: list[dict[str, Any]], path: Path, title: str, root: Path | None = None) -> None:
    """Loss and accuracy per epoch (train and test) as a PNG."""
    import_extra("matplotlib", "plot", "curves.png")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    epochs = [h["epoch"] for h in history]
    figure, (loss_axes, accuracy_axes) = pyplot.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_axes.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_axes.plot(epochs, [h["test_loss"] for h in history], label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    for key, label in (
        ("train_accuracy", "train"),
        ("test_accuracy", "test top-1"),
        ("test_top5", "test top-5"),
    ):
        accuracy_axes.plot(epochs, [100 * h[key] for h in history], label=label)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    with atomic_output(path, root=root) as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    pyplot.close(figure)
