"""``cliquegen analyze``: the paper's two looks inside a trained clique block.

``weights``: per block, the matrix of mean |W_ij| (rows i = X0, X1 .. Xn, columns j = 1 .. n,
None where the block has no W_ij), drawn as a heatmap like DenseNet's Figure 5.  Which
parameter is which W_ij comes from the compiled Program (each update op lists its input values
and, in the same order, the weight it applies to each) and the UpdateGraph (whose edges carry
``weight = (i, j)``), never from parameter names.  A block whose stages share their weights
gets one matrix; a block whose stages have their own W_ij gets one matrix per stage.

Evenness: the Gini coefficient of the block's mean |W_ij| values (every connection that
exists): the mean absolute difference of two strengths over twice their mean.  0 means every
connection is equally strong; it grows towards 1 as a few connections carry the strength (for
m connections at most 1 - 1/m).  Like the normalised entropy it is scale-free and bounded, but
it separates the nearly even spreads that trained clique blocks show: for 12 strengths spread
evenly between 1 and 2 the normalised entropy is 0.99 and the Gini coefficient 0.12; for half
at 1 and half at 2, 0.98 against 0.17.

``features``: the input image, and per layer of a block the mean over channels of
|X_j(1)| (after Stage I) and of |X_j| after the last stage, with the mean, the maximum and the
share of the map's total inside its central half (rows and columns from H/4 to H - H/4, a
quarter of the pixels: 0.25 for an even map).  The values are the model's own: the spec's FX
model, with the given weights, runs through ``torch.fx.Interpreter`` and
:func:`intermediate_values` keeps the nodes named after the Program's values (``b1_x3_s2``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint.load import load_trained
from ..compiler.lower import compile_spec
from ..draw.figure import figure_format, require_matplotlib, save_figure
from ..errors import UsageError
from ..spec.model import Spec
from .features import FeatureMaps, feature_maps, read_input_image, read_sample
from .figures import draw_feature_maps, draw_weight_matrices
from .weights import WeightMatrix, weight_matrices

# --- intermediate values ------------------------------------------------------------------------


# --- inputs -------------------------------------------------------------------------------------


# --- the commands -------------------------------------------------------------------------------


def _check_output(output: str | None, as_json: bool, command: str) -> None:
    """Before any work: something to produce, and a figure that can be written."""

    if output is None and not as_json:
        raise UsageError("nothing to do: give -o FIG (.png, .svg or .pdf), --json, or both")
    if output is not None:
        figure_format(output)
        require_matplotlib(command)


def analyze_weights(
    spec: str | os.PathLike[str] | Spec,
    weights: str | os.PathLike[str],
    block: int | None = None,
    output: str | None = None,
    as_json: bool = False,
) -> tuple[list[WeightMatrix], Path | None]:
    """``cliquegen analyze weights``: the matrices, and the heatmap file when ``output``."""

    _check_output(output, as_json, "cliquegen analyze weights")
    trained = load_trained(spec, weights)
    matrices = weight_matrices(compile_spec(trained.spec), trained.model.state_dict(), block)
    if output is None:
        return matrices, None
    title = f"{trained.spec.name}: mean |W_ij| ({Path(weights).name})"
    return matrices, save_figure(draw_weight_matrices(matrices, title), output)


def analyze_features(
    spec: str | os.PathLike[str] | Spec,
    weights: str | os.PathLike[str],
    *,
    image: str | None = None,
    sample: str | None = None,
    block: int = 1,
    output: str | None = None,
    json: bool = False,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> tuple[FeatureMaps, Path | None]:
    """``cliquegen analyze features``: the maps of one image, and the figure file when ``output``."""

    _check_output(output, json, "cliquegen analyze features")
    if (image is None) == (sample is None):
        raise UsageError("give one of --image IMG and --sample DATA:INDEX")
    trained = load_trained(spec, weights)
    if image is not None:
        shown = read_input_image(image, trained.spec, trained.info, mean, std)
    else:
        shown = read_sample(sample, trained.spec, trained.info)
    classes = trained.info.classes if trained.info is not None else None
    maps = feature_maps(trained.spec, trained.model, shown, block, classes)
    if output is None:
        return maps, None
    return maps, save_figure(draw_feature_maps(maps), output)
