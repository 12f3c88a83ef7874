"""The network view: stem -> blocks -> transitions -> multi-scale head, top to bottom, each head
beside its block; ``expand`` draws each clique block's tensors as the schedule view's rows.  A
graph block is one box (its graph, unit and output) either way: ``--view schedule --block N``
draws its tensors."""

from __future__ import annotations

import html

from ..compiler.ir import Op, Program, graph_blocks
from ..compiler.lower import Compiled
from ..compiler.naming import roman
from ..errors import dims
from ..spec.model import BlockConfig
from ._parts import refs_text, title_label
from .backend import Drawing
from .graph_views import output_text, unit_text
from .schedule import add_outputs, add_updates
from .style import FONT, ROW_LIMIT, html_label, small


def _op_text(program: Program, op: Op) -> str | None:
    """One line describing an op of the stem, a transition or the head."""
    if op.kind in ("input", "cat"):
        return None  # inputs and concatenations are the edges of the drawing
    if op.kind == "call":
        module = program.modules[op.attrs["module"]]
        args = module.args
        if module.kind == "conv2d":
            k, stride = args["kernel_size"], args["stride"]
            where = f"/{stride}" if stride > 1 else ""
            what = "<B>compression</B> conv" if ".compress" in module.path else "conv"
            return f"{what} {k}x{k}{where}, {args['in_channels']} &#8594; {args['out_channels']}"
        if module.kind == "batch_norm":
            return "BN"
        if module.kind == "linear":
            return f"linear {args['in_features']} &#8594; {args['out_features']}"
        if module.kind == "dropout":
            return f"dropout {args['p']:g}"
        raise AssertionError(f"op {op.name!r}: cannot describe a {module.kind!r} module")
    if op.kind == "max_pool":
        return f"max pool {op.attrs['kernel_size']}x{op.attrs['kernel_size']}/{op.attrs['stride']}"
    if op.kind == "avg_pool":
        return f"avg pool {op.attrs['kernel_size']}x{op.attrs['kernel_size']}"
    texts = {"relu": "ReLU", "sigmoid": "sigmoid", "global_pool": "global avg pool", "scale": "scale"}
    if op.kind in texts:
        return texts[op.kind]
    raise AssertionError(f"op {op.name!r}: cannot describe an op of kind {op.kind!r}")


def _describe(program: Program, ops: list[Op]) -> tuple[list[str], bool]:
    """Lines for a group of ops (BN, ReLU merged) and whether it holds an SE attention."""
    shapes = {op.name: op.shape for op in ops}
    attention = [op for op in ops if op.kind == "scale"]
    inside = {op.name for se in attention for op in ops if op.name.startswith(f"{se.name}_")}
    lines: list[str] = []
    for op in ops:
        if op in attention:
            squeeze = shapes[f"{op.name}_fc1"][0]
            lines.append(f"<B>SE attention</B> {op.shape[0]} &#8594; {squeeze} &#8594; {op.shape[0]}")
            continue
        text = None if op.name in inside else _op_text(program, op)
        if text == "ReLU" and lines and lines[-1] == "BN":
            lines[-1] = "BN-ReLU"
        elif text is not None:
            lines.append(text)
    return lines, bool(attention)


def _stages(config: BlockConfig) -> str:
    text = " + ".join(roman(s) for s in range(1, config.stages + 1))
    text = f"Stage{'s' if config.stages > 1 else ''} {text}"
    if config.partial is not None:
        text += f" ({roman(config.stages)}: first {config.partial} of {config.layers} updates)"
    return text


def network_view(compiled: Compiled, expand: bool) -> Drawing:
    graph, program = compiled.graph, compiled.program
    blocks = graph_blocks(graph)
    values = program.values
    drawing = Drawing(
        f"{compiled.spec.name}-network",
        {
            "label": title_label(
                compiled,
                "network" + (", blocks expanded into their tensors" if expand else ""),
                *(["each block's terms: --view schedule --block N"] if expand else []),
            ),
            "labelloc": "t",
            "rankdir": "TB",
            "newrank": "true",
            "nodesep": "0.35",
            "fontname": FONT,
        },
        node_attrs={"fontname": FONT, "shape": "box", "style": "rounded,filled", "fillcolor": "white"},
        edge_attrs={"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"},
    )

    # Group the ops outside the blocks: the Program lists block b, transition b, then the
    # head of block b, so head ops belong to the last block seen (the final concat aside).
    groups: dict[str, list[Op]] = {}
    current = 0
    for op in program.ops:
        if op.part.startswith("block"):
            current = int(op.part[len("block") :])
            continue
        key = op.part
        if op.part == "head":
            key = "features" if op.name == program.features and op.kind == "cat" else f"head{current}"
        groups.setdefault(key, []).append(op)

    def box(node_id: str, title: str, ops: list[Op], **attrs: str) -> bool:
        lines, attention = _describe(program, ops)
        out = small(f"&#8594; {dims(ops[-1].shape)}")
        drawing.node(node_id, label=html_label(f"<B>{title}</B>", *lines, out), **attrs)
        return attention

    def link(entry: str, target: str, what: str, channels: int) -> None:
        text = f"{what}, {channels} ch" if what else f"{channels} ch"
        drawing.edge(entry, target, label=html_label(small(text)), weight="4")  # keep the spine straight

    drawing.node("x", label=html_label("<B>input</B>", dims(values["x"].shape)), shape="oval")
    box("stem", "stem", groups["stem"])
    drawing.edge("x", "stem")
    previous = "stem"
    for b, info in enumerate(blocks):
        config = info.config
        tag = b + 1
        x0 = graph.nodes[(b, 0, 0)]
        size = dims(values[x0["name"]].shape[1:])
        out = program.block_outputs[b]  # a graph block's output: its transit and its feature
        if config is None:
            block = info.graph
            widths = sorted({node.width for node in block.nodes})
            lines = [
                f"<B>Block {tag}</B> {small(size)}",
                f"graph {html.escape(block.graph_name)}: {len(block.nodes)} nodes of "
                f"{', '.join(map(str, widths))} ch",
                f"{block.stages} stage{'s' if block.stages != 1 else ''}",
                html.escape(unit_text(block)),
                f"output {html.escape(output_text(block))}",
            ]
            drawing.node(
                f"block{tag}", label=html_label(*lines), fillcolor="#eef3f8", color="#0072b2", penwidth="2"
            )
            entry = f"block{tag}"
            outputs = {}
        elif expand:
            cluster = drawing.cluster(
                f"block{tag}",
                None,
                label=f"Block {tag}: {config.layers} layers x {config.channels} ch, {size}",
                style="rounded",
                color="#888888",
                fontname=FONT,
            )
            drawn, last_row = add_updates(drawing, compiled, b, cluster, wrap=ROW_LIMIT)
            outputs = add_outputs(drawing, compiled, b, cluster, drawn, last_row)
            entry = x0["name"]
        else:
            lines = [
                f"<B>Block {tag}</B> {small(size)}",
                f"{config.layers} layers x {config.channels} ch",
                _stages(config),
            ]
            if config.order != tuple(sorted(config.order)):
                lines.append(f"order {', '.join(map(str, config.order))}")
            kernel = f"{config.kernel}x{config.kernel}"
            width = f" to {config.conv_channels} ch" if config.bottleneck_width != 1 else ""
            lines.append(f"bottleneck 1x1{width} &#8594; {kernel}" if config.bottleneck else f"W_ij {kernel}")
            if not config.share_weights:
                lines.append("each stage its own W_ij")
            drawing.node(
                f"block{tag}", label=html_label(*lines), fillcolor="#eef3f8", color="#0072b2", penwidth="2"
            )
            entry = f"block{tag}"
            outputs = {}
        drawing.edge(previous, entry, label=html_label(small(f"{x0['channels']} ch")), weight="4")

        if f"transition{tag}" in groups:
            if box(f"transition{tag}", f"transition {tag}", groups[f"transition{tag}"]):
                drawing.nodes[f"transition{tag}"] |= {
                    "fillcolor": "#fff0e0",
                    "color": "#d55e00",
                    "penwidth": "2",
                }
            if config is None:
                link(entry, f"transition{tag}", "output", values[out].shape[0])
            elif expand:
                channels = sum(graph.nodes[n]["channels"] for n in info.transit)
                link(outputs["transit"], f"transition{tag}", "", channels)
            else:
                channels = sum(graph.nodes[n]["channels"] for n in info.transit)
                link(entry, f"transition{tag}", f"transit: {refs_text(config.transit)}", channels)
            previous = f"transition{tag}"
        if f"head{tag}" not in groups:  # head kind `last`: only the last block has one
            continue
        box(f"head{tag}", f"head {tag}", groups[f"head{tag}"], fillcolor="#f3f8ee")
        channels = sum(graph.nodes[n]["channels"] for n in info.feature)
        if config is None:
            drawing.ranks.append((None, (entry, f"head{tag}")))
            link(entry, f"head{tag}", "output", values[out].shape[0])
        elif expand:
            link(outputs["feature"], f"head{tag}", "", channels)
        else:  # the heads in a row under their blocks
            drawing.ranks.append((None, (entry, f"head{tag}")))
            link(entry, f"head{tag}", f"feature: {refs_text(config.feature)}", channels)

    heads = [f"head{b + 1}" for b in range(len(blocks)) if f"head{b + 1}" in groups]
    if "features" in groups:
        features = groups["features"][0]
        drawing.node("features", label=html_label("<B>concat</B>", small(f"&#8594; {dims(features.shape)}")))
        for head in heads:
            drawing.edge(head, "features")
        heads = ["features"]
    box("classifier", "classifier", groups["classifier"])
    drawing.edge(heads[0], "classifier")
    return drawing
