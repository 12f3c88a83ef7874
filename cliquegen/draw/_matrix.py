"""The HTML-like tables that stand for the block and schedule views of large blocks."""

from __future__ import annotations

from ..compiler.lower import Compiled
from ._parts import block_outputs
from .backend import Drawing
from .style import FONT

_CELL = 'WIDTH="12" HEIGHT="12" FIXEDSIZE="TRUE"'


def cell(fill: str | None = None, text: str = "", **attrs: str) -> str:
    extra = "".join(f' {key.upper()}="{value}"' for key, value in attrs.items())
    fill_attr = f' BGCOLOR="{fill}"' if fill else ""
    return f"<TD {_CELL}{fill_attr}{extra}>{text}</TD>"


def head_cell(text: str, **attrs: str) -> str:
    extra = "".join(f' {key.upper()}="{value}"' for key, value in attrs.items())
    return f'<TD{extra}><FONT POINT-SIZE="9">{text}</FONT></TD>'


def matrix_drawing(compiled: Compiled, b: int, name: str, title: str, rows: list[str], note: str) -> Drawing:
    table = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="0" COLOR="#dddddd">'
    drawing = Drawing(
        name,
        {"label": title, "labelloc": "t", "fontname": FONT},
        node_attrs={"fontname": FONT, "shape": "plain"},
    )
    drawing.node(f"b{b + 1}_matrix", label=f"<{table}{''.join(rows)}</TABLE>>", tooltip=note)
    return drawing


def output_columns(compiled: Compiled, b: int) -> list[tuple[str, dict[int, int]]]:
    """(kind, layer -> stage of its tensor) of each value that leaves block ``b``."""
    return [(kind, {n[1]: n[2] for n in tensors}) for kind, tensors, _ in block_outputs(compiled, b)]
