"""Graphviz drawings of a compiled spec: a clique block, its stage schedule, the network.

Three views, all drawn from the UpdateGraph (one node per tensor, one edge per term of a
stage equation, see :mod:`cliquegen.lower`); nothing here decides CliqueNet semantics:

``block``     X0 and X1..Xn of one block, one edge per shared weight W_ij that some stage
              uses (X0 feeds every layer; layers feed each other both ways).
``schedule``  the unrolled update order of one block: one cluster per stage, one node per
              tensor X_j(k) in execution order, one edge per UpdateGraph edge.
``network``   stem -> blocks -> transitions -> multi-scale head; the parts outside the
              blocks are described from the Program.  ``depth=1`` expands every block into
              its schedule.

A drawing is first a :class:`Drawing` (nodes, edges and clusters, in a deterministic
order) so tests can check its structure; ``Drawing.digraph()`` turns it into a
``graphviz.Digraph``.  Tensor nodes use the Program's value names (``b1_x3_s2``) as ids,
and every W_ij gets the colour of its source layer i in every view and every stage.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import graphviz
import networkx as nx

from .errors import UsageError
from .ir import NodeId, Op, Program, equation, weight_label
from .lower import Compiled, compile_spec
from .registry import resolve_spec
from .spec import BlockConfig, Spec

VIEWS = ("block", "schedule", "network")
FORMATS = ("dot", "svg", "png")

#: Edge labels (W_ij) are drawn for blocks of at most this many layers; larger blocks get
#: thin unlabelled edges so the picture stays readable.
LABEL_LIMIT = 6

#: Colour of X0 and its weights W_0j, then one colour per source layer i (cycled): the
#: Okabe-Ito colour-blind-safe palette without its yellow, plus two darker tones.
X0_COLOUR = "#555555"
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#8c564b", "#7a7a00")

MISSING_DOT = "graphviz's `dot` is not installed: install Debian's graphviz, or use --format dot"

_FONT = "Helvetica"


def colour(layer: int) -> str:
    """The colour of layer ``layer`` and of every weight W_ij leaving it."""
    return X0_COLOUR if layer == 0 else PALETTE[(layer - 1) % len(PALETTE)]


def roman(n: int) -> str:
    """Stage numbers as the paper writes them: 1 -> I, 2 -> II, 4 -> IV."""
    digits = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, letters in ((50, "L"), (40, "XL"), *digits):
        count, n = divmod(n, value)
        out += letters * count
    return out


def _html(*lines: str) -> str:
    """A graphviz HTML-like label from lines that are already HTML."""
    return "<" + "<BR/>".join(lines) + ">"


_SUB = str.maketrans("0123456789()", "₀₁₂₃₄₅₆₇₈₉₍₎")
_SUP = str.maketrans("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾")


def tensor_text(layer: int, stage: int | None = None) -> str:
    """``X₃⁽²⁾`` for X_3^(2); no stage for X0 or a block-view layer.

    Unicode sub- and superscripts rather than HTML <SUB>: graphviz writes those as an SVG
    baseline-shift on <text>, which SVG viewers ignore."""
    text = f"X{str(layer).translate(_SUB)}"
    return text if stage is None or layer == 0 else f"{text}{f'({stage})'.translate(_SUP)}"


def weight_text(i: int, j: int) -> str:
    """``W₁₃`` for W13; ``W₁,₁₂`` once an index has two digits (as ir.weight_label)."""
    return "W" + weight_label(i, j)[1:].translate(_SUB)


def _small(text: str) -> str:
    return f'<FONT POINT-SIZE="9">{text}</FONT>'


@dataclass
class Drawing:
    """Nodes, edges and clusters of one picture, in the order they are written."""

    name: str
    attrs: dict[str, str]
    node_attrs: dict[str, str] = field(default_factory=dict)
    edge_attrs: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, tuple[str | None, dict[str, str]]] = field(default_factory=dict)
    placement: dict[str, str | None] = field(default_factory=dict)  # node -> cluster
    ranks: list[tuple[str, ...]] = field(default_factory=list)  # nodes drawn side by side

    def node(self, node_id: str, cluster: str | None = None, **attrs: str) -> None:
        if node_id in self.nodes:
            raise AssertionError(f"node {node_id!r} is drawn twice")
        self.nodes[node_id] = attrs
        self.placement[node_id] = cluster

    def edge(self, src: str, dst: str, **attrs: str) -> None:
        for end in (src, dst):
            if end not in self.nodes:
                raise AssertionError(f"edge {src!r} -> {dst!r} names the undrawn node {end!r}")
        self.edges.append((src, dst, attrs))

    def cluster(self, cluster_id: str, parent: str | None = None, **attrs: str) -> str:
        self.clusters[f"cluster_{cluster_id}"] = (parent, attrs)
        return f"cluster_{cluster_id}"

    def digraph(self) -> graphviz.Digraph:
        dot = graphviz.Digraph(
            self.name, graph_attr=self.attrs, node_attr=self.node_attrs, edge_attr=self.edge_attrs
        )

        def fill(graph: graphviz.Digraph, cluster: str | None) -> None:
            for child, (parent, attrs) in self.clusters.items():
                if parent == cluster:
                    with graph.subgraph(name=child) as sub:
                        sub.attr(**attrs)
                        fill(sub, child)
            for node_id, attrs in self.nodes.items():
                if self.placement[node_id] == cluster:
                    graph.node(node_id, **attrs)

        fill(dot, None)
        for rank in self.ranks:
            with dot.subgraph() as same:
                same.attr(rank="same")
                for node_id in rank:
                    same.node(node_id)
        for src, dst, attrs in self.edges:
            dot.edge(src, dst, **attrs)
        return dot

    @property
    def source(self) -> str:
        """The DOT text."""
        return self.digraph().source


def draw(
    spec: Spec | Compiled | str | os.PathLike, view: str = "block", *, block: int = 1, depth: int = 0
) -> Drawing:
    """The drawing of one ``view`` of a spec (a Spec, a compiled spec, a path or a shipped name).

    ``block`` (1-based) picks the block of the block and schedule views; ``depth`` 1 expands
    the blocks of the network view.
    """
    compiled = spec if isinstance(spec, Compiled) else compile_spec(resolve_spec(spec))
    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    blocks = compiled.graph.graph["blocks"]
    if view == "network":
        if depth < 0:
            raise UsageError(f"depth must be 0 (blocks collapsed) or 1 (blocks expanded), got {depth}")
        return _network_view(compiled, expand=depth >= 1)
    if not 1 <= block <= len(blocks):
        raise UsageError(
            f"block {block} does not exist: {compiled.spec.name} has {len(blocks)} "
            f"block{'s' if len(blocks) != 1 else ''} (use a block number from 1 to {len(blocks)})"
        )
    if view == "block":
        return _block_view(compiled, block - 1)
    return _schedule_view(compiled, block - 1)


def render(
    spec: Spec | Compiled | str | os.PathLike,
    view: str = "block",
    *,
    block: int = 1,
    depth: int = 0,
    format: str = "dot",
) -> str | bytes:
    """DOT text (``format="dot"``), SVG text (``"svg"``) or PNG bytes (``"png"``) of a view.

    SVG and PNG come from graphviz's ``dot``; without it they raise :class:`UsageError`.
    """
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    drawing = draw(spec, view, block=block, depth=depth)
    if format == "dot":
        return drawing.source
    try:
        return drawing.digraph().pipe(format=format, encoding="utf-8" if format == "svg" else None)
    except graphviz.ExecutableNotFound:
        raise UsageError(MISSING_DOT) from None


# -- block view ---------------------------------------------------------------------------


def _block_nodes(graph: nx.DiGraph, b: int) -> list[NodeId]:
    """The tensors of block ``b`` in execution order (X0 first)."""
    return sorted((n for n in graph.nodes if n[0] == b), key=lambda n: graph.nodes[n]["step"])


def _block_edges(graph: nx.DiGraph, b: int) -> list[tuple[NodeId, NodeId]]:
    """The stage-equation terms of block ``b``, by the step of their target, then source."""
    step = {n: graph.nodes[n]["step"] for n in _block_nodes(graph, b)}
    edges = [(u, v) for u, v in graph.edges if v[0] == b]
    return sorted(edges, key=lambda e: (step[e[1]], step[e[0]]))


def _title(compiled: Compiled, what: str) -> str:
    return _html(f"<B>{html.escape(compiled.spec.name)}</B>: {what}")


def _block_view(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph.graph["blocks"][b]["config"]
    n, labelled = config.layers, config.layers <= LABEL_LIMIT
    weights = sorted({graph.edges[e]["weight"] for e in _block_edges(graph, b)})
    kernel = f"{config.conv_kernel}x{config.conv_kernel}"
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}",
        {
            "label": _title(compiled, f"block {b + 1}, {n} layers, one edge per shared weight W_ij"),
            "labelloc": "t",
            "layout": "neato",
            "splines": "true",
            "outputorder": "edgesfirst",
            "fontname": _FONT,
        },
        node_attrs={"fontname": _FONT, "shape": "circle", "style": "filled", "fixedsize": "true"},
        edge_attrs={
            "fontname": _FONT,
            "fontsize": "10",
            "arrowsize": "0.7" if labelled else "0.4",
            "labeldistance": "3.2",
            "labelangle": "18",
        },
    )
    # Layers on a circle (X1 at the top, clockwise), X0 to the left of it: the paper's Fig. 1.
    radius = max(1.3, 0.45 * n)
    x0 = graph.nodes[(b, 0, 0)]
    drawing.node(
        x0["name"],
        label=_html(tensor_text(0), _small(f"{x0['channels']} ch")),
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
        drawing.node(
            f"b{b + 1}_x{layer}",
            label=_html(tensor_text(layer), _small(f"{config.channels} ch")),
            pos=f"{radius * math.cos(angle):.3f},{radius * math.sin(angle):.3f}!",
            width="0.75",
            color=colour(layer),
            fillcolor="white",
            penwidth="2",
            tooltip=f"X{layer}: {config.channels} channels",
        )
    for i, j in weights:
        attrs = {
            "color": colour(i),
            "tooltip": f"{weight_label(i, j)}: X{i} -> X{j}, {kernel} conv",
        }
        if labelled:
            # by the head: W_ij sits next to X_j and W_ji next to X_i; W_0j fan out of X0
            where = "taillabel" if i == 0 else "headlabel"
            attrs |= {where: _html(weight_text(i, j)), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.6"
        drawing.edge(f"b{b + 1}_x{i}", f"b{b + 1}_x{j}", **attrs)
    return drawing


# -- schedule view ------------------------------------------------------------------------


def _add_schedule(
    drawing: Drawing, compiled: Compiled, b: int, parent: str | None, labels: bool = True
) -> None:
    """Block ``b``'s tensors, one cluster per stage, and one edge per UpdateGraph edge."""
    graph = compiled.graph
    config: BlockConfig = graph.graph["blocks"][b]["config"]
    labelled = labels and config.layers <= LABEL_LIMIT
    before = {j: set(config.order[: config.order.index(j)]) for j in config.order}
    stages: dict[int, str] = {}
    for node in _block_nodes(graph, b):
        data = graph.nodes[node]
        layer, stage = data["layer"], data["stage"]
        if layer == 0:
            drawing.node(
                data["name"],
                parent,
                label=_html(tensor_text(0), _small(f"{data['channels']} ch")),
                shape="box",
                style="filled,rounded,bold",
                fillcolor="#e6e6e6",
                color=X0_COLOUR,
                tooltip=f"X0: block {b + 1} input, {data['channels']} channels",
            )
            continue
        if stage not in stages:
            count = sum(1 for n in graph.nodes if n[0] == b and n[2] == stage)
            note = f" (first {count} of {config.layers} updates)" if count < config.layers else ""
            stages[stage] = drawing.cluster(
                f"b{b + 1}_stage{stage}",
                parent,
                label=f"Stage {roman(stage)}{note}",
                style="rounded,filled",
                fillcolor="#f7f7f7" if stage % 2 else "#eef3f8",
                color="#bbbbbb",
                fontname=_FONT,
            )
        drawing.node(
            data["name"],
            stages[stage],
            label=_html(tensor_text(layer, stage)),
            color=colour(layer),
            tooltip=equation(graph, node),
        )
    for u, v in _block_edges(graph, b):
        i, j = graph.edges[u, v]["weight"]
        attrs = {
            "color": colour(i),
            "tooltip": f"{equation(graph, v).split(' = ')[0]} uses {weight_label(i, j)}",
            # a term from the previous stage (a layer after j in the order) is dashed
            "style": "solid" if i == 0 or i in before[j] else "dashed",
        }
        if labelled:
            attrs |= {"label": _html(weight_text(i, j)), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.6"
        drawing.edge(graph.nodes[u]["name"], graph.nodes[v]["name"], **attrs)


def _schedule_view(compiled: Compiled, b: int) -> Drawing:
    config: BlockConfig = compiled.graph.graph["blocks"][b]["config"]
    order = "" if config.order == tuple(sorted(config.order)) else f", order {list(config.order)}"
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}-schedule",
        {
            "label": _title(
                compiled,
                f"block {b + 1} unrolled{html.escape(order)}; solid: this stage, dashed: previous stage",
            ),
            "labelloc": "t",
            "rankdir": "LR",
            "nodesep": "0.3",
            "ranksep": "0.55",
            "fontname": _FONT,
        },
        node_attrs={
            "fontname": _FONT,
            "shape": "circle",
            "style": "filled",
            "fillcolor": "white",
            "penwidth": "2",
        },
        edge_attrs={"fontname": _FONT, "fontsize": "9", "arrowsize": "0.6"},
    )
    _add_schedule(drawing, compiled, b, None)
    return drawing


# -- network view -------------------------------------------------------------------------


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


def _shape(shape: Iterable[int]) -> str:
    return "x".join(map(str, shape))


def _stages(config: BlockConfig) -> str:
    text = " + ".join(roman(s) for s in range(1, config.stages + 1))
    text = f"Stage{'s' if config.stages > 1 else ''} {text}"
    if config.partial is not None:
        text += f" ({roman(config.stages)}: first {config.partial} of {config.layers} updates)"
    return text


def _refs(refs: Iterable[str | int]) -> str:
    return " + ".join(tensor_text(0) if r == "x0" else f"Stage {roman(int(r))}" for r in refs)


def _network_view(compiled: Compiled, expand: bool) -> Drawing:
    graph, program = compiled.graph, compiled.program
    blocks = graph.graph["blocks"]
    values = program.values
    drawing = Drawing(
        f"{compiled.spec.name}-network",
        {
            "label": _title(compiled, "network" + (", blocks expanded" if expand else "")),
            "labelloc": "t",
            "rankdir": "LR",
            "nodesep": "0.35",
            "fontname": _FONT,
        },
        node_attrs={"fontname": _FONT, "shape": "box", "style": "rounded,filled", "fillcolor": "white"},
        edge_attrs={"fontname": _FONT, "fontsize": "9", "arrowsize": "0.7"},
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
        out = _small(f"&#8594; {_shape(ops[-1].shape)}")
        drawing.node(node_id, label=_html(f"<B>{title}</B>", *lines, out), **attrs)
        return attention

    def link(entry: str, sources: list[NodeId], target: str, what: str) -> None:
        """The block's transit or feature tensors into ``target``: one edge per tensor
        when expanded, else one labelled edge from the collapsed block."""
        if expand:
            for n in sources:
                drawing.edge(graph.nodes[n]["name"], target, color="#999999")
        else:
            channels = sum(graph.nodes[n]["channels"] for n in sources)
            drawing.edge(entry, target, label=_html(_small(f"{what}, {channels} ch")))

    drawing.node("x", label=_html("<B>input</B>", _shape(values["x"].shape)), shape="oval")
    box("stem", "stem", groups["stem"])
    drawing.edge("x", "stem")
    previous = "stem"
    for b, info in enumerate(blocks):
        config: BlockConfig = info["config"]
        tag = b + 1
        x0 = graph.nodes[(b, 0, 0)]
        size = _shape(values[x0["name"]].shape[1:])
        if expand:
            cluster = drawing.cluster(
                f"block{tag}",
                None,
                label=f"Block {tag}: {config.layers} layers x {config.channels} ch, {size}",
                style="rounded",
                color="#888888",
                fontname=_FONT,
            )
            _add_schedule(drawing, compiled, b, cluster, labels=False)
            entry = x0["name"]
        else:
            lines = [
                f"<B>Block {tag}</B> {_small(size)}",
                f"{config.layers} layers x {config.channels} ch",
                _stages(config),
            ]
            if config.order != tuple(sorted(config.order)):
                lines.append(f"order {', '.join(map(str, config.order))}")
            kernel = f"{config.kernel}x{config.kernel}"
            lines.append(f"bottleneck 1x1 &#8594; {kernel}" if config.bottleneck else f"W_ij {kernel}")
            drawing.node(
                f"block{tag}", label=_html(*lines), fillcolor="#eef3f8", color="#0072b2", penwidth="2"
            )
            entry = f"block{tag}"
        drawing.edge(previous, entry, label=_html(_small(f"{x0['channels']} ch")))

        if f"transition{tag}" in groups:
            if box(f"transition{tag}", f"transition {tag}", groups[f"transition{tag}"]):
                drawing.nodes[f"transition{tag}"] |= {
                    "fillcolor": "#fff0e0",
                    "color": "#d55e00",
                    "penwidth": "2",
                }
            link(entry, info["transit"], f"transition{tag}", f"transit: {_refs(config.transit)}")
            previous = f"transition{tag}"
        if f"head{tag}" not in groups:  # head kind `last`: only the last block has one
            continue
        box(f"head{tag}", f"head {tag}", groups[f"head{tag}"], fillcolor="#f3f8ee")
        if not expand:  # the heads in a row under their blocks
            drawing.ranks.append((entry, f"head{tag}"))
        link(entry, info["feature"], f"head{tag}", f"feature: {_refs(config.feature)}")

    heads = [f"head{b + 1}" for b in range(len(blocks)) if f"head{b + 1}" in groups]
    if "features" in groups:
        features = groups["features"][0]
        drawing.node("features", label=_html("<B>concat</B>", _small(f"&#8594; {_shape(features.shape)}")))
        for head in heads:
            drawing.edge(head, "features")
        heads = ["features"]
    box("classifier", "classifier", groups["classifier"])
    drawing.edge(heads[0], "classifier")
    return drawing
