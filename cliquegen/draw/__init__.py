"""Drawings: the graphviz views of a compiled spec (block, schedule, network) and the matplotlib
plumbing every figure of the package is drawn with.

The names of :mod:`cliquegen.draw.views` are offered here and load graphviz when first used.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy

if TYPE_CHECKING:
    from .views import (
        EDGE_LIMIT,
        FORMATS,
        LABEL_LIMIT,
        MISSING_DOT,
        OUTPUT_EDGE,
        OUTPUT_FILL,
        PALETTE,
        ROW_LIMIT,
        SUFFIXES,
        VIEWS,
        X0_COLOUR,
        Drawing,
        colour,
        draw,
        output_format,
        render,
        tensor_text,
        weight_text,
    )

__all__ = [
    "EDGE_LIMIT",
    "FORMATS",
    "LABEL_LIMIT",
    "MISSING_DOT",
    "OUTPUT_EDGE",
    "OUTPUT_FILL",
    "PALETTE",
    "ROW_LIMIT",
    "SUFFIXES",
    "VIEWS",
    "X0_COLOUR",
    "Drawing",
    "colour",
    "draw",
    "output_format",
    "render",
    "tensor_text",
    "weight_text",
]

__getattr__, __dir__ = lazy(__name__, dict.fromkeys(__all__, ".views"))
