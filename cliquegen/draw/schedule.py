"""The schedule view: one block unrolled, one row per stage, one column per layer in execution
order, one node per tensor X_j(k), one edge per term (a matrix of the terms above
:data:`~cliquegen.draw.style.EDGE_LIMIT` layers).  The expanded network view draws its blocks
with the same stage clusters, placed by dot."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..compiler.ir import NodeId, equation, graph_blocks, weight_label
from ..compiler.lower import Compiled
from ..compiler.naming import roman
from ..spec.model import BlockConfig
from ._matrix import cell, head_cell, matrix_drawing, output_columns
from ._parts import (
    block_edges,
    block_nodes,
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
    SUP,
    X0_COLOUR,
    colour,
    html_label,
    kernel_text,
    small,
    tensor_text,
    weight_text,
)

#: The schedule view's grid, in inches: one column per layer in execution order (wider where
#: the edges carry W_ij labels or the nodes name a bottleneck), one row per stage; the stage
#: titles stand right of the rows.
COLUMN = 1.5
NARROW_COLUMN = 1.2
BOTTLENECK_EXTRA = 0.3
ROW = 1.7
TITLE_OFFSET = 1.3


@dataclass(frozen=True)
class StageRow:
    """The drawn updates of one stage of a block, in execution order, in their cluster."""

    stage: int
    cluster: str
    title: str
    nodes: list[str]


def add_update_nodes(
    drawing: Drawing, compiled: Compiled, b: int, parent: str | None, *, small_circles: bool = False
) -> tuple[dict[NodeId, str], list[StageRow]]:
    """X0, then one cluster per stage holding its title and its updates in execution order
    (``small_circles``: all of one small size).  Returns the drawn node of every tensor, and
    the stages."""
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    tag = b + 1
    bottleneck = bottleneck_label(config)
    drawn: dict[NodeId, str] = {}
    rows: dict[int, list[NodeId]] = {}
    for node in block_nodes(graph, b):
        data = graph.nodes[node]
        if data["layer"] == 0:
            drawing.node(
                data["name"],
                parent,
                label=html_label(tensor_text(0), small(f"{data['channels']} ch")),
                shape="box",
                style="filled,rounded,bold",
                fillcolor="#e6e6e6",
                color=X0_COLOUR,
                tooltip=f"X0: block {tag} input, {data['channels']} channels",
            )
            drawn[node] = data["name"]
        else:
            rows.setdefault(data["stage"], []).append(node)
    stages = []
    for stage, nodes in rows.items():
        note = f"first {len(nodes)} of {config.layers} updates" if len(nodes) < config.layers else ""
        cluster = drawing.cluster(
            f"b{tag}_stage{stage}",
            parent,
            label="",
            style="rounded,filled",
            fillcolor="#f7f7f7" if stage % 2 else "#eef3f8",
            color="#bbbbbb",
        )
        title = f"b{tag}_stage{stage}"
        drawing.node(
            title,
            cluster,
            label=html_label(f"Stage {roman(stage)}", *([small(note)] if note else [])),
            shape="plaintext",
            style="",
            fixedsize="false",
        )
        for node in nodes:
            data = graph.nodes[node]
            label = [tensor_text(data["layer"], stage)] + ([bottleneck] if bottleneck else [])
            drawing.node(
                data["name"],
                cluster,
                label=html_label(*label),
                shape="circle",
                style="filled",
                fillcolor="white",
                penwidth="2",
                **({"width": "0.6", "fixedsize": "true"} if small_circles else {}),
                color=colour(data["layer"]),
                tooltip=equation(graph, node),
            )
            drawn[node] = data["name"]
        stages.append(StageRow(stage, cluster, title, [drawn[node] for node in nodes]))
    return drawn, stages


def add_updates(
    drawing: Drawing, compiled: Compiled, b: int, parent: str | None, wrap: int
) -> tuple[dict[NodeId, str], list[str]]:
    """The updates of block ``b`` for dot (the expanded network view): each stage in rows of at
    most ``wrap`` nodes under each other, X_j(k) below X_j(k-1), the stage's title ending its
    first row, held so by invisible edges.  Returns the drawn node of every tensor, and the
    last row."""
    drawn, stages = add_update_nodes(drawing, compiled, b, parent, small_circles=True)
    above: list[str] = []  # the updates of the row placed last
    titles: list[str] = []
    for stage in stages:
        for start in range(0, len(stage.nodes), wrap):
            row = stage.nodes[start : start + wrap]
            if not above:  # X0 over the middle of the first row
                drawing.hide(drawn[(b, 0, 0)], row[len(row) // 2])
            for upper, lower in zip(above, row, strict=False):  # X_j(k) under X_j(k-1)
                drawing.hide(upper, lower, weight="8")
            shown = row + [stage.title] if start == 0 else row
            drawing.ranks.append((stage.cluster, tuple(shown)))
            for left, right in zip(shown, shown[1:], strict=False):
                drawing.hide(left, right)
            above = row
        if titles:
            drawing.hide(titles[-1], stage.title, weight="8")
        titles.append(stage.title)
    return drawn, above


def _add_terms(drawing: Drawing, compiled: Compiled, b: int, labelled: bool) -> None:
    """One edge per UpdateGraph edge of block ``b``: solid from this stage, dashed from the
    previous; the W_ij label is an external label, which graphviz keeps off the nodes."""
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    before = {j: set(config.order[: config.order.index(j)]) for j in config.order}
    for u, v in block_edges(graph, b):
        i, j = graph.edges[u, v]["weight"]
        attrs = {
            "color": colour(i),
            "tooltip": f"{equation(graph, v).split(' = ')[0]} uses {weight_label(i, j)}",
            # a term from the previous stage (a layer after j in the order) is dashed
            "style": "solid" if i == 0 or i in before[j] else "dashed",
        }
        if not config.share_weights:  # each stage's own W_ij: W13 of stage 2 is W13(2)
            attrs["tooltip"] += f" of stage {v[2]}"
        if labelled:
            text = weight_text(i, j) + ("" if config.share_weights else f"({v[2]})".translate(SUP))
            attrs |= {"xlabel": html_label(text), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.7"
        drawing.edge(graph.nodes[u]["name"], graph.nodes[v]["name"], **attrs)


def add_output_nodes(
    drawing: Drawing,
    compiled: Compiled,
    b: int,
    parent: str | None,
    drawn: dict[NodeId, str],
    **edge_attrs: str,
) -> dict[str, str]:
    """The feature and transit nodes of block ``b``, each fed by the tensors it concatenates;
    returns kind -> node."""
    nodes = {}
    for kind, tensors, where in block_outputs(compiled, b):
        nodes[kind] = output_node(drawing, compiled, b, kind, tensors, where, parent)
        for tensor in tensors:
            output_edge(drawing, drawn[tensor], nodes[kind], **edge_attrs)
    return nodes


def add_outputs(
    drawing: Drawing,
    compiled: Compiled,
    b: int,
    parent: str | None,
    drawn: dict[NodeId, str],
    last_row: list[str],
) -> dict[str, str]:
    """The output nodes for dot: side by side under the middle of the last row."""
    nodes = add_output_nodes(drawing, compiled, b, parent, drawn, constraint="false")
    middle = last_row[len(last_row) // 2] if last_row else drawn[(b, 0, 0)]
    for node in nodes.values():
        drawing.hide(middle, node)  # the edges into it do not place it
    drawing.ranks.append((parent, tuple(nodes.values())))
    return nodes


def _order_note(config: BlockConfig) -> str:
    return "" if config.order == tuple(sorted(config.order)) else f", order {list(config.order)}"


def _pin(drawing: Drawing, node: str, x: float, y: float) -> None:
    drawing.nodes[node]["pos"] = f"{x:.3f},{y:.3f}!"


def _label_width(label: str) -> float:
    """About how wide an output node's label is drawn, in inches: its longest line, in 14 pt
    Helvetica or (inside <FONT>) 9 pt."""
    widest = 0.0
    for line in label.strip("<>").split("<BR/>"):
        size = 0.063 if line.startswith("<FONT") else 0.105
        widest = max(widest, size * len(re.sub(r"<[^>]*>|&#\d+;", "", line)))
    return widest + 0.3


def schedule_view(compiled: Compiled, b: int) -> Drawing:
    """Every update of block ``b`` at a fixed place: one column per layer in execution order
    and one row per stage, so X_j(k) stands under X_j(k-1); X0 above, the values that leave
    the block below.  neato keeps the places and routes the edges around the nodes."""
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    labelled = config.layers <= LABEL_LIMIT
    colours = "" if labelled else "; the colour of an edge is its layer i (hover for W_ij)"
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}-schedule",
        {
            "label": title_label(
                compiled,
                f"block {b + 1} unrolled{html.escape(_order_note(config))}",
                f"solid: a value of this stage, dashed: of the previous stage{colours}",
                *update_notes(config),
                "grey edges: the values that leave the block",
            ),
            "labelloc": "t",
            "layout": "neato",
            "splines": "true",
            "forcelabels": "true",
            "outputorder": "edgesfirst",
            "fontname": FONT,
        },
        node_attrs={
            "fontname": FONT,
            "shape": "circle",
            "style": "filled",
            "fillcolor": "white",
            "penwidth": "2",
        },
        edge_attrs={"fontname": FONT, "fontsize": "9", "arrowsize": "0.6"},
    )
    drawn, stages = add_update_nodes(drawing, compiled, b, None)
    step = (COLUMN if labelled else NARROW_COLUMN) + (BOTTLENECK_EXTRA if config.bottleneck else 0.0)
    column = {layer: i * step for i, layer in enumerate(config.order)}
    right = max(column.values())
    middle = right / 2
    for (_, layer, stage), node in drawn.items():
        if layer == 0:
            _pin(drawing, node, middle, ROW)
        else:
            _pin(drawing, node, column[layer], -(stage - 1) * ROW)
    for stage in stages:
        _pin(drawing, stage.title, right + TITLE_OFFSET, -(stage.stage - 1) * ROW)
    _add_terms(drawing, compiled, b, labelled)
    outputs = list(add_output_nodes(drawing, compiled, b, None, drawn).values())
    widths = [_label_width(drawing.nodes[node]["label"]) for node in outputs]
    x = middle - (sum(widths) + 0.6 * (len(widths) - 1)) / 2
    for node, width in zip(outputs, widths, strict=True):
        _pin(drawing, node, x + width / 2, -len(stages) * ROW)
        x += width + 0.6
    return drawing


def schedule_matrix(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n = config.layers
    outputs = output_columns(compiled, b)
    bottleneck = bottleneck_label(config)
    width = n + 2 + (1 if bottleneck else 0)
    header = [head_cell("update \\ reads")] + [head_cell(str(i)) for i in range(0, n + 1)]
    header += [head_cell("then")] if bottleneck else []
    rows = ["<TR>" + "".join(header) + "</TR>"]
    stage_seen = 0
    terms = 0
    for node in block_nodes(graph, b)[1:]:
        _, j, stage = node
        if stage != stage_seen:
            count = sum(1 for m in graph.nodes if m[0] == b and m[2] == stage)
            note = f" (first {count} of {n} updates)" if count < n else ""
            rows.append(f'<TR><TD COLSPAN="{width}" ALIGN="LEFT"><B>Stage {roman(stage)}</B>{note}</TD></TR>')
            stage_seen = stage
        reads = {src[1]: src[2] for src in graph.predecessors(node)}
        terms += len(reads)
        cells = [head_cell(tensor_text(j, stage), ALIGN="RIGHT")]
        for i in range(0, n + 1):
            if i not in reads:
                cells.append(cell("#eeeeee" if i == j else None))
            else:  # this stage's value in full colour, the previous stage's pale
                cells.append(cell(colour(i) if i == 0 or reads[i] == stage else colour(i) + "55"))
        if bottleneck:
            cells.append(head_cell(kernel_text(config.kernel)))
        rows.append("<TR>" + "".join(cells) + "</TR>")
    for kind, stages in outputs:
        cells = [head_cell(f"<B>{kind}</B>", ALIGN="RIGHT", BGCOLOR=OUTPUT_FILL[kind])]
        for i in range(0, n + 1):
            text = "" if i not in stages else tensor_text(0) if i == 0 else f"{stages[i]}"
            cells.append(head_cell(text, BGCOLOR=OUTPUT_FILL[kind]) if text else cell())
        cells += [cell()] if bottleneck else []
        rows.append("<TR>" + "".join(cells) + "</TR>")
    what = (
        f"block {b + 1} unrolled{html.escape(_order_note(config))}, {n} layers: {terms:,} terms as a matrix"
    )
    notes = (
        f"more than {EDGE_LIMIT} layers: a row is an update X_j(k) in execution order, a cell the layer i "
        "it reads through W_ij, in layer i's colour: full for a value of this stage, pale for the last",
        "feature and transit rows: the stage of each layer's value that leaves the block",
        *update_notes(config),
    )
    return matrix_drawing(
        compiled,
        b,
        f"{compiled.spec.name}-block{b + 1}-schedule",
        title_label(compiled, what, *notes),
        rows,
        what,
    )
