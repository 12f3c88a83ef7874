"""Drawings of explicit graph blocks and of image-to-image networks.

``block``     the block's nodes (its input X0, or X0's slices when the input is split), one
              edge per source node -> node that some update reads, a loop where a node reads
              its own previous value, and the output (cat, res_scale, the residual add).
``schedule``  one row per stage, the updates in execution order, one edge per source of each
              update (solid: a value of this stage; dashed: of an earlier stage; grey dotted:
              an input slice or X0), then the output.
``network``   the network's ops top to bottom: mean shifts, DWT/IDWT, convs, each block (or,
              expanded, its schedule), the group's fusion with an edge from every block, and
              each skip as a dashed edge from the op that saved it.

:func:`graph_view` is what :func:`.views.draw` asks first, so ``render``/``draw`` serve these
specs too; node ids are the Program's value names, as in the clique views.
"""

from __future__ import annotations

import html

from ..compiler.graph_blocks import GraphBlock, Ref
from ..compiler.ir import graph_blocks
from ..compiler.lower import Compiled
from ..compiler.lower_blocks import block_value
from ..compiler.naming import roman
from ..errors import dims
from ..spec.network import INPUT_SKIP, ImageSpec
from ._parts import title_label
from .backend import Drawing
from .style import FONT, OUTPUT_EDGE, X0_COLOUR, colour, html_label, small

_UNIT_FILL = {"pre": "#eef3f8", "post": "#f3f8ee"}


def unit_text(block: GraphBlock) -> str:
    unit = block.unit
    if unit.kind == "pre":
        text = f"BN-ReLU-{unit.kernel}x{unit.kernel} conv"
        if unit.bottleneck_kernel:
            text += f", BN-ReLU-{unit.bottleneck_kernel}x{unit.bottleneck_kernel} conv"
    else:
        act = {"relu": "ReLU", "prelu": "PReLU", "leaky_relu": f"LeakyReLU({unit.slope:g})"}[unit.act]
        text = f"{unit.kernel}x{unit.kernel} conv{' + bias' if unit.bias else ''} -> {act}"
    weights = {"per-update": "one conv per update", "shared": "W_ij shared", "untied": "W_ij per stage"}
    return f"each update: {text}; {weights[block.weights]}"


def output_text(block: GraphBlock) -> str:
    text = f"cat({', '.join(block.label(ref) for ref in block.output)})"
    if block.res_scale != 1:
        text += f" x {block.res_scale:g}"
    return text + (" + X0" if block.residual else "")


def _inputs(drawing: Drawing, block: GraphBlock, cluster: str | None, name: str) -> dict[Ref, str]:
    """X0 and, for a split input, its slices: the values with stage 0."""
    drawn = {(0, 0): name}
    drawing.node(
        name,
        cluster,
        label=html_label("X0", small(f"{block.input_channels} ch")),
        shape="box",
        style="filled,rounded,bold",
        fillcolor="#e6e6e6",
        color=X0_COLOUR,
        tooltip=f"X0: block {block.index + 1} input, {block.input_channels} channels",
    )
    if block.split:
        read = {ref for update in block.updates for ref in update.sources} | set(block.output)
        for j, node in enumerate(block.nodes, 1):
            if (j, 0) in read:
                value = block_value(block, (j, 0))
                drawing.node(
                    value,
                    cluster,
                    label=html_label(f"{node.label}(0)", small(f"{node.width} ch")),
                    shape="box",
                    style="filled,rounded",
                    fillcolor="#f2f2f2",
                    color=colour(j),
                    tooltip=f"{node.label}(0): its slice of X0",
                )
                drawing.edge(name, value, color=OUTPUT_EDGE, style="dotted", arrowsize="0.5")
                drawn[j, 0] = value
    return drawn


def _output(drawing: Drawing, block: GraphBlock, cluster: str | None, drawn: dict[Ref, str]) -> str:
    node_id = f"b{block.index + 1}_out"
    drawing.node(
        node_id,
        cluster,
        label=html_label("<B>output</B>", small(html.escape(output_text(block)))),
        shape="box",
        style="rounded,filled",
        fillcolor="#fff0e0",
        color="#777777",
    )
    for ref in block.output:
        drawing.edge(drawn[ref], node_id, color=OUTPUT_EDGE, arrowsize="0.5")
    if block.residual:
        drawing.edge(
            drawn[(0, 0)], node_id, color="#d55e00", style="dashed", label=html_label(small("residual"))
        )
    return node_id


def _updates(drawing: Drawing, block: GraphBlock, cluster: str | None, drawn: dict[Ref, str]) -> list[str]:
    """One cluster per stage with its updates in execution order; one edge per source."""
    stages: dict[int, list] = {}
    for update in block.updates:
        stages.setdefault(update.stage, []).append(update)
    tag = block.index + 1
    last: list[str] = []
    for stage, updates in stages.items():
        inner = drawing.cluster(
            f"b{tag}_stage{stage}",
            cluster,
            label=f"Stage {roman(stage)}",
            style="rounded,filled",
            fillcolor="#f7f7f7" if stage % 2 else "#eef3f8",
            color="#bbbbbb",
            fontname=FONT,
        )
        row = []
        for update in updates:
            ref = (update.node, update.stage)
            value = block_value(block, ref)
            drawing.node(
                value,
                inner,
                label=html_label(block.label(ref)),
                shape="circle",
                style="filled",
                fillcolor="white",
                penwidth="2",
                color=colour(update.node),
                tooltip=block.equation(update),
            )
            for source in update.sources:
                style = "dotted" if source[1] == 0 else "solid" if source[1] == stage else "dashed"
                own = source[0] == update.node
                drawing.edge(
                    drawn[source],
                    value,
                    color=X0_COLOUR if source == (0, 0) else colour(source[0]),
                    style=style,
                    penwidth="2" if own else "1",
                    tooltip=f"{block.label(ref)} reads {block.label(source)}" + (" (its own)" if own else ""),
                )
            drawn[ref] = value
            row.append(value)
        drawing.ranks.append((inner, tuple(row)))
        for left, right in zip(row, row[1:], strict=False):
            drawing.hide(left, right)
        last = row
    return last


def schedule_view(compiled: Compiled, b: int) -> Drawing:
    block = graph_blocks(compiled.graph)[b].graph
    drawing = Drawing(
        f"{compiled.spec.name}-schedule{b + 1}",
        {
            "label": title_label(
                compiled,
                f"block {b + 1} unrolled, {len(block.updates)} updates",
                html.escape(unit_text(block)),
                "solid: a value of this stage; dashed: of an earlier stage; dotted: the input; "
                "thick: its own",
            ),
            "labelloc": "t",
            "rankdir": "TB",
            "newrank": "true",
            "fontname": FONT,
        },
        node_attrs={"fontname": FONT, "fixedsize": "false"},
        edge_attrs={"fontname": FONT, "arrowsize": "0.6"},
    )
    x0 = compiled.graph.nodes[(b, 0, 0)]["name"]
    drawn = _inputs(drawing, block, None, x0)
    _updates(drawing, block, None, drawn)
    _output(drawing, block, None, drawn)
    return drawing


def block_view(compiled: Compiled, b: int) -> Drawing:
    """The nodes with one edge per (source node, node) pair any update reads."""
    block = graph_blocks(compiled.graph)[b].graph
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}",
        {
            "label": title_label(
                compiled,
                f"block {b + 1}: {len(block.nodes)} nodes, one edge per source node; "
                "loops: a node reads itself",
                html.escape(unit_text(block)),
                f"output {html.escape(output_text(block))}",
            ),
            "labelloc": "t",
            "rankdir": "LR",
            "fontname": FONT,
        },
        node_attrs={"fontname": FONT},
        edge_attrs={"fontname": FONT, "arrowsize": "0.6"},
    )
    tag = b + 1
    x0 = f"b{tag}_x0"
    drawing.node(
        x0,
        label=html_label("X0" + (" (split)" if block.split else ""), small(f"{block.input_channels} ch")),
        shape="box",
        style="filled,rounded,bold",
        fillcolor="#e6e6e6",
        color=X0_COLOUR,
    )
    for j, node in enumerate(block.nodes, 1):
        drawing.node(
            f"b{tag}_node_{node.name}",
            label=html_label(node.label, small(f"{node.width} ch")),
            shape="circle",
            style="filled",
            fillcolor="white",
            penwidth="2",
            color=colour(j),
        )
    pairs: dict[tuple[int, int], list[str]] = {}
    for update in block.updates:
        for source in update.sources:
            i = 0 if source == (0, 0) or source[1] == 0 else source[0]  # a slice comes from X0
            pairs.setdefault((i, update.node), []).append(
                f"{block.label(source)} -> {block.label((update.node, update.stage))}"
            )
    for (i, j), uses in pairs.items():
        src = x0 if i == 0 else f"b{tag}_node_{block.node(i).name}"
        drawing.edge(
            src,
            f"b{tag}_node_{block.node(j).name}",
            color=colour(i),
            tooltip="; ".join(uses),
            label=html_label(small(str(len(uses)))) if len(uses) > 1 else "",
        )
    out = f"b{tag}_out"
    drawing.node(out, label=html_label("<B>output</B>", small(html.escape(output_text(block)))), shape="box")
    for ref in dict.fromkeys(block.output):
        src = x0 if ref == (0, 0) or ref[1] == 0 else f"b{tag}_node_{block.node(ref[0]).name}"
        drawing.edge(src, out, color=OUTPUT_EDGE, arrowsize="0.5")
    if block.residual:
        drawing.edge(x0, out, color="#d55e00", style="dashed", label=html_label(small("residual")))
    return drawing


def network_view(compiled: Compiled, expand: bool) -> Drawing:
    """The ops of an image network, top to bottom; blocks collapsed or expanded."""
    spec: ImageSpec = compiled.spec
    program = compiled.program
    infos = graph_blocks(compiled.graph)
    drawing = Drawing(
        f"{spec.name}-network",
        {
            "label": title_label(compiled, "network" + (", blocks expanded" if expand else "")),
            "labelloc": "t",
            "rankdir": "TB",
            "newrank": "true",
            "fontname": FONT,
        },
        node_attrs={"fontname": FONT, "shape": "box", "style": "rounded,filled", "fillcolor": "white"},
        edge_attrs={"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"},
    )
    shapes = {op.name: op.shape for op in program.ops}
    drawing.node("x", label=html_label("<B>input</B>", dims(shapes["x"])), shape="oval")
    previous, saved, block, counts = "x", {INPUT_SKIP: "x"}, 0, {}

    def step(node_id: str, title: str, detail: str, value: str, **attrs: str) -> None:
        nonlocal previous
        drawing.node(
            node_id,
            label=html_label(
                f"<B>{html.escape(title)}</B>", small(detail), small(f"&#8594; {dims(shapes[value])}")
            ),
            **attrs,
        )
        drawing.edge(previous, node_id, weight="4")
        previous = node_id

    for op in spec.network:
        counts[op.op] = counts.get(op.op, 0) + 1
        if op.op == "conv":
            act = (
                f", {op.act}"
                if isinstance(op.act, str)
                else f", LeakyReLU({op.act.leaky_relu:g})"
                if op.act
                else ""
            )
            step(
                op.name,
                op.name,
                f"{op.kernel}x{op.kernel} conv{act}",
                f"{op.name}_act" if op.act else op.name,
            )
        elif op.op == "mean_shift":
            name = op.name or f"mean_shift{counts['mean_shift']}"
            sign = "+" if op.sign > 0 else "-"
            step(
                name,
                "mean shift",
                f"x {sign} {op.scale:g} x mean (constants)",
                f"{name}_out",
                fillcolor="#f2f2f2",
            )
        elif op.op in ("dwt", "idwt"):
            name = f"{op.op}{counts[op.op]}"
            what = "Haar DWT" if op.op == "dwt" else "inverse Haar DWT"
            step(name, what, "bands LL, HL, LH, HH", name, fillcolor="#fff8dc", color="#e69f00")
        elif op.op == "add":
            name = f"add{counts['add']}"
            skip = f"{op.skip}, {op.resize}" if op.resize else op.skip
            step(name, "+", f"skip {skip}", name, shape="circle")
            drawing.edge(
                saved[op.skip],
                name,
                style="dashed",
                color="#d55e00",
                label=html_label(small(skip)),
                constraint="false",
            )
        elif op.op == "group":
            outputs = []
            for _ in range(op.blocks):
                info = infos[block]
                graph = info.graph
                block += 1
                value = program.block_outputs[block - 1]
                if expand:
                    cluster = drawing.cluster(
                        f"block{block}",
                        None,
                        label=f"Block {block} ({op.graph})",
                        style="rounded",
                        color="#888888",
                        fontname=FONT,
                    )
                    drawn = _inputs(drawing, graph, cluster, f"b{block}_in")
                    _updates(drawing, graph, cluster, drawn)
                    out = _output(drawing, graph, cluster, drawn)
                    drawing.edge(previous, f"b{block}_in", weight="4")
                    previous = out
                else:
                    stages = f"{graph.stages} stage{'s' if graph.stages != 1 else ''}"
                    detail = f"{len(graph.nodes)} nodes, {stages}; {html.escape(output_text(graph))}"
                    step(
                        f"block{block}",
                        f"Block {block}: {op.graph}",
                        detail,
                        value,
                        fillcolor=_UNIT_FILL[graph.unit.kind],
                        color="#0072b2",
                    )
                outputs.append(previous)
            if op.fuse is not None:
                fuse = op.fuse
                value = f"{fuse.name}_act" if fuse.act else fuse.name
                drawing.node(
                    fuse.name,
                    label=html_label(
                        f"<B>{fuse.name}</B>",
                        small(f"cat of {op.blocks} blocks, {fuse.kernel}x{fuse.kernel} conv"),
                        small(f"&#8594; {dims(shapes[value])}"),
                    ),
                    fillcolor="#f3f8ee",
                )
                for output in outputs:
                    drawing.edge(output, fuse.name, color=OUTPUT_EDGE)
                previous = fuse.name
        if op.save:
            saved[op.save] = previous
    drawing.node("y", label=html_label("<B>output</B>", dims(shapes[program.output])), shape="oval")
    drawing.edge(previous, "y")
    return drawing


def graph_view(compiled: Compiled, view: str, block: int | None, expand: bool) -> Drawing | None:
    """The drawing of an image network or an explicit graph block; None for the clique views."""
    if view == "network":
        return network_view(compiled, expand) if isinstance(compiled.spec, ImageSpec) else None
    info = graph_blocks(compiled.graph)[block]
    if info.config is not None:
        return None
    return block_view(compiled, block) if view == "block" else schedule_view(compiled, block)
