"""Graphviz drawings of a compiled spec: a clique block, its stage schedule, the network.

Three views, all drawn from the UpdateGraph (one node per tensor, one edge per term of a
stage equation, see :mod:`cliquegen.compiler.lower`); nothing here decides CliqueNet semantics:

``block``     X0 and X1..Xn of one block, one edge per weight W_ij that some stage uses
              (X0 feeds every layer; layers feed each other both ways).
``schedule``  the unrolled update order of one block: one row per stage, one node per
              tensor X_j(k) in execution order, one edge per UpdateGraph edge.
``network``   stem -> blocks -> transitions -> multi-scale head, top to bottom, each head
              beside its block; the parts outside the blocks are described from the
              Program.  ``depth=1`` expands every block into its tensors.

The block and schedule views also draw what leaves the block: a ``feature`` node (to the
head) and a ``transit`` node (to the next block), each fed by the values it concatenates,
and write the bottleneck into every update.  Blocks of more than :data:`EDGE_LIMIT`
layers have too many terms to draw as edges (a 36-layer schedule has 1,926): their block
and schedule views are matrices instead, one coloured cell per term, and say so.

A drawing is first a :class:`Drawing` (nodes, edges and clusters, in a deterministic
order) so tests can check its structure; ``Drawing.digraph()`` turns it into a
``graphviz.Digraph``.  Tensor nodes use the Program's value names (``b1_x3_s2``) as ids,
and every W_ij gets the colour of its source layer i in every view and every stage.

This module picks the view (:func:`draw`) and its output (:func:`render`); each view has its
module (``block``, ``schedule``, ``network``; ``graph_views`` for explicit graph blocks and
image networks), on the graphviz backend (``backend``: the
Drawing, DOT, ``dot``) and the look shared by all (``style``: limits, colours, label text).
"""

from __future__ import annotations

import os

from ..compiler.ir import graph_blocks
from ..compiler.lower import Compiled, compile_spec
from ..errors import UsageError
from ..spec.model import Spec
from ..spec.shipped import resolve_spec
from .backend import FORMATS, MISSING_DOT, SUFFIXES, Drawing, output_format
from .block import block_matrix, block_view
from .graph_views import graph_view
from .network import network_view
from .schedule import schedule_matrix, schedule_view
from .style import (
    EDGE_LIMIT,
    LABEL_LIMIT,
    OUTPUT_EDGE,
    OUTPUT_FILL,
    PALETTE,
    ROW_LIMIT,
    X0_COLOUR,
    colour,
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

VIEWS = ("block", "schedule", "network")


def draw(
    spec: Spec | Compiled | str | os.PathLike,
    view: str = "block",
    *,
    block: int | None = None,
    depth: int | None = None,
) -> Drawing:
    """The drawing of one ``view`` of a spec (a Spec, a compiled spec, a path or a shipped name).

    ``block`` (1-based, default 1) picks the block of the block and schedule views; ``depth``
    1 expands the blocks of the network view.  An option the view does not use is refused.
    """
    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if view == "network" and block is not None:
        raise UsageError(
            "--block applies to the block and schedule views; the network view draws every block "
            "(--depth 1 expands them)"
        )
    if view != "network" and depth is not None:
        raise UsageError(
            f"--depth applies to the network view only; the {view} view draws one block (--block N)"
        )
    if depth is not None and depth not in (0, 1):
        raise UsageError(f"depth must be 0 (blocks collapsed) or 1 (blocks expanded), got {depth}")
    compiled = spec if isinstance(spec, Compiled) else compile_spec(resolve_spec(spec))
    blocks = graph_blocks(compiled.graph)
    if view != "network":
        block = 1 if block is None else block
        if not 1 <= block <= len(blocks):
            raise UsageError(
                f"block {block} does not exist: {compiled.spec.name} has {len(blocks)} "
                f"block{'s' if len(blocks) != 1 else ''} (use a block number from 1 to {len(blocks)})"
            )
    drawing = graph_view(compiled, view, None if block is None else block - 1, depth == 1)
    if drawing is not None:  # an image network, or an explicit graph block
        return drawing
    if view == "network":
        return network_view(compiled, expand=depth == 1)
    layers = blocks[block - 1].config.layers
    if view == "block":
        return block_view(compiled, block - 1) if layers <= EDGE_LIMIT else block_matrix(compiled, block - 1)
    return (
        schedule_view(compiled, block - 1) if layers <= EDGE_LIMIT else schedule_matrix(compiled, block - 1)
    )


def render(
    spec: Spec | Compiled | str | os.PathLike,
    view: str = "block",
    *,
    block: int | None = None,
    depth: int | None = None,
    format: str = "dot",
) -> str | bytes:
    """DOT text (``format="dot"``), SVG text (``"svg"``) or PNG, PDF, JPEG bytes of a view.

    All but DOT come from graphviz's ``dot``; without it, or when it fails, they raise
    :class:`UsageError`.
    """
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    drawing = draw(spec, view, block=block, depth=depth)
    return drawing.source if format == "dot" else drawing.pipe(format)
