"""Figures of ``cliquegen analyze``: the weight-strength matrices and the feature maps of a block
(drawn on :mod:`cliquegen.draw.figure`'s plumbing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..compiler.naming import roman
from ..draw.figure import figure_style, new_figure
from .features import FeatureMaps
from .weights import WeightMatrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def draw_weight_matrices(matrices: Sequence[WeightMatrix], title: str) -> Figure:
    """One heatmap per block (per block and stage for untied weights): rows are the source
    layer i (X0 first), columns the target layer j, colour the mean |W_ij|; blank where the
    block has no W_ij."""
    import matplotlib
    import numpy as np

    with figure_style():
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


def draw_feature_maps(maps: FeatureMaps) -> Figure:
    """The input image, and per layer of the block its channel-averaged |activation| after
    Stage I and after the last stage, on one colour scale per layer."""
    with figure_style():
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
