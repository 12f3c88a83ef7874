"""Deprecated: this module moved to cliquegen.draw.figure, cliquegen.train.figures and
cliquegen.analysis.figures; its names still work here for one release, with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.figures",
    {
        "DPI": "cliquegen.draw.figure",
        "FORMATS": "cliquegen.draw.figure",
        "draw_curves": "cliquegen.train.figures",
        "draw_feature_maps": "cliquegen.analysis.figures",
        "draw_results": "cliquegen.train.figures",
        "draw_weight_matrices": "cliquegen.analysis.figures",
        "figure_format": "cliquegen.draw.figure",
        "new_figure": "cliquegen.draw.figure",
        "require_matplotlib": "cliquegen.draw.figure",
        "save_figure": "cliquegen.draw.figure",
    },
)
