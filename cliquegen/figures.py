"""matplotlib drawings of sweeps, training curves, weight strengths and feature maps.

Each ``draw_*`` function takes numbers computed elsewhere (:mod:`cliquegen.sweep`,
:mod:`cliquegen.analyze`) and returns a ``matplotlib.figure.Figure`` (no pyplot, no global
state); :func:`save_figure` writes it as PNG, SVG or PDF by the file's suffix, with the same
bytes for the same numbers (no dates in the metadata, a fixed SVG id salt).  matplotlib comes
with the ``plot`` extra; without it, :func:`require_matplotlib` says so (exit 2).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import atomic_write
from .errors import UsageError, import_extra
from .naming import roman

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .analyze import FeatureMaps, WeightMatrix
    from .sweep import Curve, SpecResult

FORMATS = ("png", "svg", "pdf")
DPI = 150
_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}
_RC = {"svg.hashsalt": "cliquegen", "font.size": 9, "axes.titlesize": 9, "figure.titlesize": 11}


def require_matplotlib(purpose: str) -> None:
    import_extra("matplotlib", "plot", purpose)


def figure_format(path: str | os.PathLike[str]) -> str:
    """``png``, ``svg`` or ``pdf`` from the file's suffix; anything else is a usage error."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UsageError(f"{path}: a figure is written as .png, .svg or .pdf, not {suffix or 'no suffix'!r}")
    return suffix


def new_figure(width: float, height: float) -> Figure:
    require_matplotlib("drawing figures")
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` atomically in the format its suffix names; return the path written."""
    import matplotlib
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fmt = figure_format(path)
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        if isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine):
            # lay out once and keep it: every later save draws the same positions
            figure.draw_without_rendering()
            figure.set_layout_engine("none")
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return atomic_write(path, buffer.getvalue())


def _millions(n: float) -> str:
    return f"{n / 1e6:.3f}M"


# --- sweeps and curves --------------------------------------------------------------------------


def draw_results(results: Sequence[SpecResult], title: str) -> Figure:
    """Top: final and best top-1 error per spec (mean, with the std over seeds as error bars),
    in the given order; bottom: the specs' parameter counts."""
    import matplotlib

    with matplotlib.rc_context(_RC):
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

    with matplotlib.rc_context(_RC):
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


# --- weight strengths ---------------------------------------------------------------------------


def draw_weight_matrices(matrices: Sequence[WeightMatrix], title: str) -> Figure:
    """One heatmap per block (per block and stage for untied weights): rows are the source
    layer i (X0 first), columns the target layer j, colour the mean |W_ij|; blank where the
    block has no W_ij."""
    import matplotlib
    import numpy as np

    with matplotlib.rc_context(_RC):
        columns = min(3, len(matrices))
        rows = -(-len(matrices) // columns)
        size = max(len(m.matrix) for m in matrices)
        panel = 1.6 + 0.45 * size
        figure = new_figure(columns * (panel + 1.0), rows * panel + 0.6)
        axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
        for axes, m in zip(axes_grid, matrices, strict=False):
            values = np.array([[np.nan if v is None else v for v in row] for row in m.matrix], dtype=float)
            image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, interpolation="nearest")
            n_rows, n_cols = values.shape
            axes.set_xticks(range(n_cols), m.columns)
            axes.set_yticks(range(n_rows), m.rows)
            axes.set_xlabel("target layer j")
            axes.set_ylabel("source layer i")
            where = f"block {m.block}" if m.tied else f"block {m.block}, stage {roman(m.stages[0])}"
            axes.set_title(f"{where}\nGini {m.gini:.3f}")
            figure.colorbar(image, ax=axes, label="mean |W_ij|", shrink=0.85)
            if size <= 9:  # up to 8 layers (and X0): the values fit in the cells
                top = np.nanmax(values)
                for (i, j), value in np.ndenumerate(values):
                    if not np.isnan(value):
                        color = "black" if value > 0.6 * top else "white"
                        axes.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color=color)
        for axes in axes_grid[len(matrices) :]:
            axes.set_axis_off()
        figure.suptitle(title)
        return figure


# --- feature maps -------------------------------------------------------------------------------


def draw_feature_maps(maps: FeatureMaps) -> Figure:
    """The input image, and per layer of the block its channel-averaged |activation| after
    Stage I and after the last stage, on one colour scale per layer."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        columns = max(len(layer.maps) for layer in maps.layers)
        rows = len(maps.layers)
        figure = new_figure(2.3 * (columns + 1) + 0.8, 2.0 * rows + 0.7)
        grid = figure.add_gridspec(rows, columns + 1)
        image_axes = figure.add_subplot(grid[0, 0])
        image_axes.imshow(maps.display_image, cmap="gray" if maps.display_image.ndim == 2 else None)
        image_axes.set_title(f"{maps.image_title}\npredicted class {maps.prediction}")
        image_axes.set_xticks([])
        image_axes.set_yticks([])
        for row, layer in enumerate(maps.layers):
            top = max(m.max for m in layer.maps)
            for column, m in enumerate(layer.maps):
                axes = figure.add_subplot(grid[row, column + 1])
                image = axes.imshow(m.array, cmap="magma", vmin=0.0, vmax=top, interpolation="nearest")
                axes.set_title(f"{m.label}: mean {m.mean:.3g}, centre {100 * m.central_share:.0f}%")
                axes.set_xticks([])
                axes.set_yticks([])
                if column == 0:
                    axes.set_ylabel(f"layer {layer.layer}", fontsize=10)
                if row == 0:
                    axes.text(
                        0.5,
                        1.25,
                        maps.column_titles[column],
                        transform=axes.transAxes,
                        ha="center",
                        fontsize=10,
                        fontweight="bold",
                    )
            figure.colorbar(image, ax=axes, label="|activation|", shrink=0.9)
        figure.suptitle(f"{maps.spec}, block {maps.block}: channel-averaged |activation| of each layer")
        return figure
