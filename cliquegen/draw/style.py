"""How the graphviz views look: limits that switch a drawing's form, the colours of layers
and outputs, and the text of tensors, weights and HTML-like labels."""

from __future__ import annotations

from ..compiler.ir import weight_label

#: W_ij edge labels are drawn in blocks of at most this many layers; larger blocks get thin
#: unlabelled edges in their layer's colour (tooltips name them).
LABEL_LIMIT = 4
#: Blocks of more layers are drawn as matrices in the block and schedule views.
EDGE_LIMIT = 12
#: In the expanded network view a stage's updates wrap into rows of this many.
ROW_LIMIT = 12

#: Colour of X0 and its weights W_0j, then one colour per source layer i (cycled): the
#: Okabe-Ito colour-blind-safe palette without its yellow, plus two darker tones.
X0_COLOUR = "#555555"
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#8c564b", "#7a7a00")
#: Fill of the feature and transit nodes, and the colour of the edges into them.
OUTPUT_FILL = {"feature": "#f3f8ee", "transit": "#fff0e0"}
OUTPUT_EDGE = "#aaaaaa"

FONT = "Helvetica"


def colour(layer: int) -> str:
    """The colour of layer ``layer`` and of every weight W_ij leaving it."""
    return X0_COLOUR if layer == 0 else PALETTE[(layer - 1) % len(PALETTE)]


def html_label(*lines: str) -> str:
    """A graphviz HTML-like label from lines that are already HTML."""
    return "<" + "<BR/>".join(lines) + ">"


SUB = str.maketrans("0123456789()", "₀₁₂₃₄₅₆₇₈₉₍₎")
SUP = str.maketrans("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾")


def tensor_text(layer: int, stage: int | None = None) -> str:
    """``X₃⁽²⁾`` for X_3^(2); no stage for X0 or a block-view layer.

    Unicode sub- and superscripts rather than HTML <SUB>: graphviz writes those as an SVG
    baseline-shift on <text>, which SVG viewers ignore."""
    text = f"X{str(layer).translate(SUB)}"
    return text if stage is None or layer == 0 else f"{text}{f'({stage})'.translate(SUP)}"


def weight_text(i: int, j: int) -> str:
    """``W₁₃`` for W13; ``W₁,₁₂`` once an index has two digits (as ir.weight_label)."""
    return "W" + weight_label(i, j)[1:].translate(SUB)


def small(text: str) -> str:
    return f'<FONT POINT-SIZE="9">{text}</FONT>'


def kernel_text(k: int) -> str:
    return f"{k}x{k}"
