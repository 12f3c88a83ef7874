"""The block view: X0 and X1..Xn of one block, one edge per weight W_ij that some stage uses
(a matrix of the weights above :data:`~cliquegen.draw.style.EDGE_LIMIT` layers)."""

from __future__ import annotations

import math

from ..compiler.ir import graph_blocks, weight_label
from ..compiler.lower import Compiled
from ..spec.model import BlockConfig
from ._matrix import cell, head_cell, matrix_drawing, output_columns
from ._parts import (
    block_edges,
    block_outputs,
    bottleneck_label,
    output_edge,
    output_node,
    title_label,
    update_notes,
)
from .backend import Drawing
from .style import (
    EDGE_LIMIT,
    FONT,
    LABEL_LIMIT,
    OUTPUT_FILL,
    X0_COLOUR,
    colour,
    html_label,
    kernel_text,
    small,
    tensor_text,
    weight_text,
)


def block_view(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n, labelled = config.layers, config.layers <= LABEL_LIMIT
    weights = sorted({graph.edges[e]["weight"] for e in block_edges(graph, b)})
    bottleneck = bottleneck_label(config)
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}",
        {
            "label": title_label(
                compiled,
                f"block {b + 1}, {n} layers, one edge per weight W_ij",
                *([] if labelled else ["the colour of an edge is its layer i (hover for W_ij)"]),
                *update_notes(config),
                "grey edges: the values that leave the block",
            ),
            "labelloc": "t",
            "layout": "neato",
            "splines": "true",
            "outputorder": "edgesfirst",
            "fontname": FONT,
        },
        node_attrs={"fontname": FONT, "shape": "circle", "style": "filled", "fixedsize": "true"},
        edge_attrs={
            "fontname": FONT,
            "fontsize": "10",
            "arrowsize": "0.7" if labelled else "0.4",
            "labeldistance": "3.2",
            "labelangle": "18",
        },
    )
    # Layers on a circle (X1 at the top, clockwise), X0 to the left of it: the paper's Fig. 1;
    # what leaves the block to the right of it.
    radius = max(1.3, 0.45 * n)
    x0 = graph.nodes[(b, 0, 0)]
    drawing.node(
        x0["name"],
        label=html_label(tensor_text(0), small(f"{x0['channels']} ch")),
        pos=f"{-radius - 1.6:.3f},0!",
        shape="box",
        style="filled,rounded,bold",
        fixedsize="false",
        fillcolor="#e6e6e6",
        color=X0_COLOUR,
        tooltip=f"X0: block input, {x0['channels']} channels",
    )
    for layer in range(1, n + 1):
        angle = math.pi / 2 - 2 * math.pi * (layer - 1) / n + (math.pi / n if n % 2 == 0 else 0)
        lines = [tensor_text(layer), small(f"{config.channels} ch")]
        drawing.node(
            f"b{b + 1}_x{layer}",
            label=html_label(*lines, *([bottleneck] if bottleneck else [])),
            pos=f"{radius * math.cos(angle):.3f},{radius * math.sin(angle):.3f}!",
            width="0.8" if bottleneck else "0.75",
            color=colour(layer),
            fillcolor="white",
            penwidth="2",
            tooltip=f"X{layer}: {config.channels} channels"
            + (f"; 1x1 W_ij, then its own {kernel_text(config.kernel)} conv" if bottleneck else ""),
        )
    stages_of: dict[tuple[int, int], list[int]] = {}
    for u, v in block_edges(graph, b):
        stages_of.setdefault(graph.edges[u, v]["weight"], []).append(v[2])
    for i, j in weights:
        attrs = {
            "color": colour(i),
            "tooltip": f"{weight_label(i, j)}: X{i} -> X{j}, {kernel_text(config.conv_kernel)} conv",
        }
        if not config.share_weights:
            attrs["tooltip"] += ", one per stage: " + ", ".join(
                f"{weight_label(i, j)}({stage})" for stage in stages_of[i, j]
            )
        if labelled:
            # by the head: W_ij sits next to X_j and W_ji next to X_i; W_0j fan out of X0
            where = "taillabel" if i == 0 else "headlabel"
            attrs |= {where: html_label(weight_text(i, j)), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.6"
        drawing.edge(f"b{b + 1}_x{i}", f"b{b + 1}_x{j}", **attrs)
    outputs = block_outputs(compiled, b)
    for row, (kind, tensors, where) in enumerate(outputs):
        node_id = output_node(drawing, compiled, b, kind, tensors, where, None)
        y = 0.9 * (len(outputs) - 1) - 1.8 * row
        drawing.nodes[node_id]["pos"] = f"{radius + 3.2:.3f},{y:.3f}!"
        for tensor in tensors:
            output_edge(drawing, f"b{b + 1}_x{tensor[1]}", node_id)
    return drawing


def block_matrix(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n = config.layers
    weights = {graph.edges[e]["weight"] for e in block_edges(graph, b)}
    outputs = output_columns(compiled, b)
    bottleneck = bottleneck_label(config)
    header = [head_cell("from \\ to")] + [head_cell(str(j)) for j in range(1, n + 1)]
    header += [head_cell(kind) for kind, _ in outputs]
    rows = ["<TR>" + "".join(header) + "</TR>"]
    for i in range(0, n + 1):
        cells = [head_cell(tensor_text(i), ALIGN="RIGHT")]
        cells += [cell(colour(i) if (i, j) in weights else None) for j in range(1, n + 1)]
        for kind, stages in outputs:
            text = "" if i not in stages else tensor_text(0) if i == 0 else f"{stages[i]}"
            cells.append(head_cell(text, BGCOLOR=OUTPUT_FILL[kind]) if text else cell())
        rows.append("<TR>" + "".join(cells) + "</TR>")
    if bottleneck:
        rows.append(
            f'<TR><TD COLSPAN="{n + 1 + len(outputs)}"><FONT POINT-SIZE="9">'
            f"then each layer's {kernel_text(config.kernel)} conv (the bottleneck)</FONT></TD></TR>"
        )
    what = f"block {b + 1}, {n} layers: {len(weights):,} weights W_ij as a matrix"
    notes = (
        f"more than {EDGE_LIMIT} layers: a cell (row i, column j) is a weight W_ij, coloured as layer i",
        "feature and transit columns: the stage of each layer's value that leaves the block",
        *update_notes(config),
    )
    return matrix_drawing(
        compiled, b, f"{compiled.spec.name}-block{b + 1}", title_label(compiled, what, *notes), rows, what
    )
