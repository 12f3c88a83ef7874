"""Graphviz drawings of a compiled spec: a clique block, its stage schedule, the network.

Three views, all drawn from the UpdateGraph (one node per tensor, one edge per term of a
stage equation, see :mod:`cliquegen.lower`); nothing here decides CliqueNet semantics:

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
"""

from __future__ import annotations

import html
import math
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import graphviz
import networkx as nx

from ..compiler.ir import NodeId, Op, Program, equation, graph_blocks, weight_label
from ..compiler.lower import Compiled, compile_spec
from ..compiler.naming import roman
from ..errors import UsageError, dims
from ..spec.model import BlockConfig, Spec
from ..spec.shipped import resolve_spec

VIEWS = ("block", "schedule", "network")
FORMATS = ("dot", "svg", "png", "pdf", "jpg")
#: File suffixes (in any case) and the format each names.
SUFFIXES = {
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".jpg": "jpg",
    ".jpeg": "jpg",
}

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

MISSING_DOT = "graphviz's `dot` is not installed: install Debian's graphviz, or use --format dot"

#: Views these clique views do not draw (explicit graph blocks, image networks): each is called
#: with (compiled, view, 0-based block or None, expand) and returns a Drawing, or None to pass;
#: :mod:`.graph_views` registers itself here.
EXTRA_VIEWS: list[Callable[[Compiled, str, int | None, bool], Drawing | None]] = []

_FONT = "Helvetica"


def colour(layer: int) -> str:
    """The colour of layer ``layer`` and of every weight W_ij leaving it."""
    return X0_COLOUR if layer == 0 else PALETTE[(layer - 1) % len(PALETTE)]


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


def output_format(path: str | os.PathLike | None, format: str | None = None) -> str:
    """The format to write: ``format``, else the one ``path``'s suffix names (any case), else DOT.

    A suffix that names no format, or another format than ``format``, is refused: the file
    would not hold what its name says."""
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    suffix = Path(path).suffix if path is not None else ""
    named = SUFFIXES.get(suffix.lower())
    if suffix and named is None and format is None:
        raise UsageError(
            f"cannot tell a drawing format from the suffix {suffix!r} of {os.fspath(path)!r}: "
            f"name the file .{', .'.join(s.lstrip('.') for s in SUFFIXES)}, or give --format "
            f"{'|'.join(FORMATS)}"
        )
    if format is not None and named is not None and named != format:
        raise UsageError(
            f"--format {format} does not match the suffix of {os.fspath(path)!r}, which names {named}"
        )
    return format or named or "dot"


@dataclass
class Drawing:
    """Nodes, edges and clusters of one picture, in the order they are written.

    ``edges`` are what the picture shows; ``hidden`` are invisible edges that only order
    and align the nodes; ``ranks`` are (cluster, nodes) drawn side by side."""

    name: str
    attrs: dict[str, str]
    node_attrs: dict[str, str] = field(default_factory=dict)
    edge_attrs: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    hidden: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, tuple[str | None, dict[str, str]]] = field(default_factory=dict)
    placement: dict[str, str | None] = field(default_factory=dict)  # node -> cluster
    ranks: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    def node(self, node_id: str, cluster: str | None = None, **attrs: str) -> None:
        if node_id in self.nodes:
            raise AssertionError(f"node {node_id!r} is drawn twice")
        self.nodes[node_id] = attrs
        self.placement[node_id] = cluster

    def _check(self, src: str, dst: str) -> None:
        for end in (src, dst):
            if end not in self.nodes:
                raise AssertionError(f"edge {src!r} -> {dst!r} names the undrawn node {end!r}")

    def edge(self, src: str, dst: str, **attrs: str) -> None:
        self._check(src, dst)
        self.edges.append((src, dst, attrs))

    def hide(self, src: str, dst: str, **attrs: str) -> None:
        """An invisible edge that only places ``dst`` after (below or right of) ``src``."""
        self._check(src, dst)
        self.hidden.append((src, dst, attrs))

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
            for parent, rank in self.ranks:
                if parent == cluster:
                    with graph.subgraph() as same:
                        same.attr(rank="same")
                        for node_id in rank:
                            same.node(node_id)

        fill(dot, None)
        for src, dst, attrs in self.hidden:  # first: dot orders nodes by the edges it reads first
            dot.edge(src, dst, style="invis", **attrs)
        for src, dst, attrs in self.edges:
            dot.edge(src, dst, **attrs)
        return dot

    @property
    def source(self) -> str:
        """The DOT text."""
        return self.digraph().source

    def pipe(self, format: str) -> str | bytes:
        """The picture drawn by graphviz: SVG text, or the bytes of a PNG, PDF or JPEG."""
        try:
            return self.digraph().pipe(
                format=format, encoding="utf-8" if format == "svg" else None, quiet=True
            )
        except graphviz.ExecutableNotFound:
            raise UsageError(MISSING_DOT) from None
        except graphviz.CalledProcessError as error:
            raise UsageError(_dot_failure(self.name, error)) from None
        except OSError as error:
            raise UsageError(f"cannot run graphviz's dot: {error.strerror or error}") from None


def _dot_failure(name: str, error: graphviz.CalledProcessError) -> str:
    """One line saying how graphviz failed on a drawing."""
    if error.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-error.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-error.returncode}"
    else:
        how = f"exited with status {error.returncode}"
    stderr = (
        error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else error.stderr or ""
    )
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = f" ({said[-1][:200].encode('unicode_escape').decode('ascii')})" if said else ""
    return f"graphviz's dot {how} drawing {name}{detail}; --format dot writes the DOT text instead"


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
    for extra in EXTRA_VIEWS:
        drawing = extra(compiled, view, None if block is None else block - 1, depth == 1)
        if drawing is not None:
            return drawing
    if view == "network":
        return _network_view(compiled, expand=depth == 1)
    layers = blocks[block - 1].config.layers
    if view == "block":
        return (
            _block_view(compiled, block - 1) if layers <= EDGE_LIMIT else _block_matrix(compiled, block - 1)
        )
    return (
        _schedule_view(compiled, block - 1) if layers <= EDGE_LIMIT else _schedule_matrix(compiled, block - 1)
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


# -- what the views share -----------------------------------------------------------------


def _block_nodes(graph: nx.DiGraph, b: int) -> list[NodeId]:
    """The tensors of block ``b`` in execution order (X0 first)."""
    return sorted((n for n in graph.nodes if n[0] == b), key=lambda n: graph.nodes[n]["step"])


def _block_edges(graph: nx.DiGraph, b: int) -> list[tuple[NodeId, NodeId]]:
    """The stage-equation terms of block ``b``, by the step of their target, then source."""
    step = {n: graph.nodes[n]["step"] for n in _block_nodes(graph, b)}
    edges = [(u, v) for u, v in graph.edges if v[0] == b]
    return sorted(edges, key=lambda e: (step[e[1]], step[e[0]]))


def _title(compiled: Compiled, what: str, *notes: str) -> str:
    return _html(f"<B>{html.escape(compiled.spec.name)}</B>: {what}", *map(_small, notes))


def _kernel(k: int) -> str:
    return f"{k}x{k}"


def _bottleneck(config: BlockConfig) -> str | None:
    """What an update does after its W_ij in a bottleneck block, for the node labels."""
    return f'<FONT POINT-SIZE="7">1x1&#8594;{_kernel(config.kernel)}</FONT>' if config.bottleneck else None


def _update_notes(config: BlockConfig) -> list[str]:
    """Lines saying what every update of the block computes and which weights it uses."""
    own = "the layer's" if config.share_weights else "the stage's own"
    if config.bottleneck:
        width = f" ({config.bottleneck_width}k)" if config.bottleneck_width != 1 else ""
        text = (
            f"each update: BN-ReLU, the 1x1 W_ij to {config.conv_channels} ch{width}, BN-ReLU, "
            f"{own} {_kernel(config.kernel)} conv to {config.channels} ch (the bottleneck)"
        )
    else:
        text = f"each update: BN-ReLU, then the {_kernel(config.kernel)} W_ij to {config.channels} ch"
    if not config.share_weights:
        return [text, "every stage has its own W_ij (share_weights: false)"]
    if config.stages == 1:
        return [text, "one stage: each layer reads X0 and every layer before it (a dense block)"]
    return [text]


def _outputs(compiled: Compiled, b: int) -> list[tuple[str, list[NodeId], str]]:
    """(kind, tensors, where they go) of the values that leave block ``b``: the feature when
    a head reads it (head kind ``last`` reads only the last block's), the transit unless
    ``b`` is the last block."""
    info = graph_blocks(compiled.graph)[b]
    config: BlockConfig = info.config
    outputs = []
    if info.feature:
        outputs.append(("feature", info.feature, f"to head {b + 1}: {_refs(config.feature)}"))
    if info.transit:
        outputs.append(("transit", info.transit, f"to transition {b + 1}: {_refs(config.transit)}"))
    return outputs


def _refs(refs: Iterable[str | int]) -> str:
    return " + ".join(tensor_text(0) if r == "x0" else f"Stage {roman(int(r))}" for r in refs)


def _output_node(
    drawing: Drawing,
    compiled: Compiled,
    b: int,
    kind: str,
    tensors: list[NodeId],
    where: str,
    cluster: str | None,
) -> str:
    """The feature or transit node of block ``b``, listing the tensors it concatenates."""
    graph = compiled.graph
    names = [tensor_text(n[1], n[2]) for n in tensors]
    lines = [" ".join(names[i : i + 6]) for i in range(0, len(names), 6)]
    channels = sum(graph.nodes[n]["channels"] for n in tensors)
    node_id = f"b{b + 1}_{kind}"
    drawing.node(
        node_id,
        cluster,
        label=_html(f"<B>{kind}</B> {where}", *map(_small, lines), _small(f"{channels} ch")),
        shape="box",
        style="rounded,filled",
        fillcolor=OUTPUT_FILL[kind],
        color="#777777",
        penwidth="1",
        fixedsize="false",
        tooltip=f"{kind} of block {b + 1}: concatenation of "
        + ", ".join(graph.nodes[n]["name"] for n in tensors),
    )
    return node_id


def _output_edge(drawing: Drawing, src: str, dst: str, **attrs: str) -> None:
    drawing.edge(src, dst, color=OUTPUT_EDGE, arrowsize="0.5", penwidth="0.8", style="solid", **attrs)


# -- block view ---------------------------------------------------------------------------


def _block_view(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n, labelled = config.layers, config.layers <= LABEL_LIMIT
    weights = sorted({graph.edges[e]["weight"] for e in _block_edges(graph, b)})
    bottleneck = _bottleneck(config)
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}",
        {
            "label": _title(
                compiled,
                f"block {b + 1}, {n} layers, one edge per weight W_ij",
                *([] if labelled else ["the colour of an edge is its layer i (hover for W_ij)"]),
                *_update_notes(config),
                "grey edges: the values that leave the block",
            ),
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
    # Layers on a circle (X1 at the top, clockwise), X0 to the left of it: the paper's Fig. 1;
    # what leaves the block to the right of it.
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
        lines = [tensor_text(layer), _small(f"{config.channels} ch")]
        drawing.node(
            f"b{b + 1}_x{layer}",
            label=_html(*lines, *([bottleneck] if bottleneck else [])),
            pos=f"{radius * math.cos(angle):.3f},{radius * math.sin(angle):.3f}!",
            width="0.8" if bottleneck else "0.75",
            color=colour(layer),
            fillcolor="white",
            penwidth="2",
            tooltip=f"X{layer}: {config.channels} channels"
            + (f"; 1x1 W_ij, then its own {_kernel(config.kernel)} conv" if bottleneck else ""),
        )
    stages_of: dict[tuple[int, int], list[int]] = {}
    for u, v in _block_edges(graph, b):
        stages_of.setdefault(graph.edges[u, v]["weight"], []).append(v[2])
    for i, j in weights:
        attrs = {
            "color": colour(i),
            "tooltip": f"{weight_label(i, j)}: X{i} -> X{j}, {_kernel(config.conv_kernel)} conv",
        }
        if not config.share_weights:
            attrs["tooltip"] += ", one per stage: " + ", ".join(
                f"{weight_label(i, j)}({stage})" for stage in stages_of[i, j]
            )
        if labelled:
            # by the head: W_ij sits next to X_j and W_ji next to X_i; W_0j fan out of X0
            where = "taillabel" if i == 0 else "headlabel"
            attrs |= {where: _html(weight_text(i, j)), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.6"
        drawing.edge(f"b{b + 1}_x{i}", f"b{b + 1}_x{j}", **attrs)
    outputs = _outputs(compiled, b)
    for row, (kind, tensors, where) in enumerate(outputs):
        node_id = _output_node(drawing, compiled, b, kind, tensors, where, None)
        y = 0.9 * (len(outputs) - 1) - 1.8 * row
        drawing.nodes[node_id]["pos"] = f"{radius + 3.2:.3f},{y:.3f}!"
        for tensor in tensors:
            _output_edge(drawing, f"b{b + 1}_x{tensor[1]}", node_id)
    return drawing


# -- schedule view ------------------------------------------------------------------------


def _add_updates(
    drawing: Drawing, compiled: Compiled, b: int, parent: str | None, wrap: int | None = None
) -> tuple[dict[NodeId, str], list[str]]:
    """X0, then one cluster per stage holding its updates in execution order, as rows of at
    most ``wrap`` nodes (one row if None) under each other, X_j(k) below X_j(k-1).  Returns
    the drawn node of every tensor, and the last row."""
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    tag = b + 1
    bottleneck = _bottleneck(config)
    drawn: dict[NodeId, str] = {}
    rows: dict[int, list[NodeId]] = {}
    for node in _block_nodes(graph, b):
        data = graph.nodes[node]
        if data["layer"] == 0:
            drawing.node(
                data["name"],
                parent,
                label=_html(tensor_text(0), _small(f"{data['channels']} ch")),
                shape="box",
                style="filled,rounded,bold",
                fillcolor="#e6e6e6",
                color=X0_COLOUR,
                tooltip=f"X0: block {tag} input, {data['channels']} channels",
            )
            drawn[node] = data["name"]
        else:
            rows.setdefault(data["stage"], []).append(node)
    above: list[str] = []  # the updates of the row drawn last
    titles: list[str] = []
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
        # the stage's title ends its first row (dot keeps a row's order best that way round)
        title = f"b{tag}_stage{stage}"
        drawing.node(
            title,
            cluster,
            label=_html(f"Stage {roman(stage)}", *([_small(note)] if note else [])),
            shape="plaintext",
            style="",
            fixedsize="false",
        )
        width = wrap or len(nodes)
        for start in range(0, len(nodes), width):
            row = []
            for node in nodes[start : start + width]:
                data = graph.nodes[node]
                label = [tensor_text(data["layer"], stage)] + ([bottleneck] if bottleneck else [])
                drawing.node(
                    data["name"],
                    cluster,
                    label=_html(*label),
                    shape="circle",
                    style="filled",
                    fillcolor="white",
                    penwidth="2",
                    **({"width": "0.6", "fixedsize": "true"} if wrap else {}),
                    color=colour(data["layer"]),
                    tooltip=equation(graph, node),
                )
                drawn[node] = data["name"]
                row.append(data["name"])
            if not above:  # X0 over the middle of the first row
                drawing.hide(drawn[(b, 0, 0)], row[len(row) // 2])
            for upper, lower in zip(above, row, strict=False):  # X_j(k) under X_j(k-1)
                drawing.hide(upper, lower, weight="8")
            shown = row + [title] if start == 0 else row
            drawing.ranks.append((cluster, tuple(shown)))
            for left, right in zip(shown, shown[1:], strict=False):
                drawing.hide(left, right)
            above = row
        if titles:
            drawing.hide(titles[-1], title, weight="8")
        titles.append(title)
    return drawn, above


def _add_terms(drawing: Drawing, compiled: Compiled, b: int, labelled: bool) -> None:
    """One edge per UpdateGraph edge of block ``b``: solid from this stage, dashed from the previous."""
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    before = {j: set(config.order[: config.order.index(j)]) for j in config.order}
    for u, v in _block_edges(graph, b):
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
            text = weight_text(i, j) + ("" if config.share_weights else f"({v[2]})".translate(_SUP))
            attrs |= {"label": _html(text), "fontcolor": colour(i)}
        else:
            attrs["penwidth"] = "0.7"
        drawing.edge(graph.nodes[u]["name"], graph.nodes[v]["name"], **attrs)


def _add_outputs(
    drawing: Drawing,
    compiled: Compiled,
    b: int,
    parent: str | None,
    drawn: dict[NodeId, str],
    last_row: list[str],
) -> dict[str, str]:
    """The feature and transit nodes of block ``b`` side by side under the middle of its last
    row, each fed by the tensors it concatenates; returns kind -> node."""
    middle = last_row[len(last_row) // 2] if last_row else drawn[(b, 0, 0)]
    nodes = {}
    for kind, tensors, where in _outputs(compiled, b):
        nodes[kind] = _output_node(drawing, compiled, b, kind, tensors, where, parent)
        drawing.hide(middle, nodes[kind])  # the edges below do not place it
        for tensor in tensors:
            _output_edge(drawing, drawn[tensor], nodes[kind], constraint="false")
    drawing.ranks.append((parent, tuple(nodes.values())))
    return nodes


def _schedule_attrs(label: str, labelled: bool) -> dict[str, str]:
    return {
        "label": label,
        "labelloc": "t",
        "rankdir": "TB",
        "newrank": "true",
        "nodesep": "0.5" if labelled else "0.3",  # room for the W_ij labels of flat edges
        "ranksep": "0.7",
        "fontname": _FONT,
    }


def _order_note(config: BlockConfig) -> str:
    return "" if config.order == tuple(sorted(config.order)) else f", order {list(config.order)}"


def _schedule_view(compiled: Compiled, b: int) -> Drawing:
    config: BlockConfig = graph_blocks(compiled.graph)[b].config
    labelled = config.layers <= LABEL_LIMIT
    colours = "" if labelled else "; the colour of an edge is its layer i (hover for W_ij)"
    drawing = Drawing(
        f"{compiled.spec.name}-block{b + 1}-schedule",
        _schedule_attrs(
            _title(
                compiled,
                f"block {b + 1} unrolled{html.escape(_order_note(config))}",
                f"solid: a value of this stage, dashed: of the previous stage{colours}",
                *_update_notes(config),
                "grey edges: the values that leave the block",
            ),
            labelled,
        ),
        node_attrs={
            "fontname": _FONT,
            "shape": "circle",
            "style": "filled",
            "fillcolor": "white",
            "penwidth": "2",
        },
        edge_attrs={"fontname": _FONT, "fontsize": "9", "arrowsize": "0.6"},
    )
    drawn, last_row = _add_updates(drawing, compiled, b, None)
    _add_terms(drawing, compiled, b, labelled)
    _add_outputs(drawing, compiled, b, None, drawn, last_row)
    return drawing


# -- matrices: the block and schedule views of large blocks ------------------------------------


_CELL = 'WIDTH="12" HEIGHT="12" FIXEDSIZE="TRUE"'


def _cell(fill: str | None = None, text: str = "", **attrs: str) -> str:
    extra = "".join(f' {key.upper()}="{value}"' for key, value in attrs.items())
    fill_attr = f' BGCOLOR="{fill}"' if fill else ""
    return f"<TD {_CELL}{fill_attr}{extra}>{text}</TD>"


def _head_cell(text: str, **attrs: str) -> str:
    extra = "".join(f' {key.upper()}="{value}"' for key, value in attrs.items())
    return f'<TD{extra}><FONT POINT-SIZE="9">{text}</FONT></TD>'


def _matrix_drawing(compiled: Compiled, b: int, name: str, title: str, rows: list[str], note: str) -> Drawing:
    table = '<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="0" COLOR="#dddddd">'
    drawing = Drawing(
        name,
        {"label": title, "labelloc": "t", "fontname": _FONT},
        node_attrs={"fontname": _FONT, "shape": "plain"},
    )
    drawing.node(f"b{b + 1}_matrix", label=f"<{table}{''.join(rows)}</TABLE>>", tooltip=note)
    return drawing


def _output_columns(compiled: Compiled, b: int) -> list[tuple[str, dict[int, int]]]:
    """(kind, layer -> stage of its tensor) of each value that leaves block ``b``."""
    return [(kind, {n[1]: n[2] for n in tensors}) for kind, tensors, _ in _outputs(compiled, b)]


def _block_matrix(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n = config.layers
    weights = {graph.edges[e]["weight"] for e in _block_edges(graph, b)}
    outputs = _output_columns(compiled, b)
    bottleneck = _bottleneck(config)
    header = [_head_cell("from \\ to")] + [_head_cell(str(j)) for j in range(1, n + 1)]
    header += [_head_cell(kind) for kind, _ in outputs]
    rows = ["<TR>" + "".join(header) + "</TR>"]
    for i in range(0, n + 1):
        cells = [_head_cell(tensor_text(i), ALIGN="RIGHT")]
        cells += [_cell(colour(i) if (i, j) in weights else None) for j in range(1, n + 1)]
        for kind, stages in outputs:
            text = "" if i not in stages else tensor_text(0) if i == 0 else f"{stages[i]}"
            cells.append(_head_cell(text, BGCOLOR=OUTPUT_FILL[kind]) if text else _cell())
        rows.append("<TR>" + "".join(cells) + "</TR>")
    if bottleneck:
        rows.append(
            f'<TR><TD COLSPAN="{n + 1 + len(outputs)}"><FONT POINT-SIZE="9">'
            f"then each layer's {_kernel(config.kernel)} conv (the bottleneck)</FONT></TD></TR>"
        )
    what = f"block {b + 1}, {n} layers: {len(weights):,} weights W_ij as a matrix"
    notes = (
        f"more than {EDGE_LIMIT} layers: a cell (row i, column j) is a weight W_ij, coloured as layer i",
        "feature and transit columns: the stage of each layer's value that leaves the block",
        *_update_notes(config),
    )
    return _matrix_drawing(
        compiled, b, f"{compiled.spec.name}-block{b + 1}", _title(compiled, what, *notes), rows, what
    )


def _schedule_matrix(compiled: Compiled, b: int) -> Drawing:
    graph = compiled.graph
    config: BlockConfig = graph_blocks(graph)[b].config
    n = config.layers
    outputs = _output_columns(compiled, b)
    bottleneck = _bottleneck(config)
    width = n + 2 + (1 if bottleneck else 0)
    header = [_head_cell("update \\ reads")] + [_head_cell(str(i)) for i in range(0, n + 1)]
    header += [_head_cell("then")] if bottleneck else []
    rows = ["<TR>" + "".join(header) + "</TR>"]
    stage_seen = 0
    terms = 0
    for node in _block_nodes(graph, b)[1:]:
        _, j, stage = node
        if stage != stage_seen:
            count = sum(1 for m in graph.nodes if m[0] == b and m[2] == stage)
            note = f" (first {count} of {n} updates)" if count < n else ""
            rows.append(f'<TR><TD COLSPAN="{width}" ALIGN="LEFT"><B>Stage {roman(stage)}</B>{note}</TD></TR>')
            stage_seen = stage
        reads = {src[1]: src[2] for src in graph.predecessors(node)}
        terms += len(reads)
        cells = [_head_cell(tensor_text(j, stage), ALIGN="RIGHT")]
        for i in range(0, n + 1):
            if i not in reads:
                cells.append(_cell("#eeeeee" if i == j else None))
            else:  # this stage's value in full colour, the previous stage's pale
                cells.append(_cell(colour(i) if i == 0 or reads[i] == stage else colour(i) + "55"))
        if bottleneck:
            cells.append(_head_cell(_kernel(config.kernel)))
        rows.append("<TR>" + "".join(cells) + "</TR>")
    for kind, stages in outputs:
        cells = [_head_cell(f"<B>{kind}</B>", ALIGN="RIGHT", BGCOLOR=OUTPUT_FILL[kind])]
        for i in range(0, n + 1):
            text = "" if i not in stages else tensor_text(0) if i == 0 else f"{stages[i]}"
            cells.append(_head_cell(text, BGCOLOR=OUTPUT_FILL[kind]) if text else _cell())
        cells += [_cell()] if bottleneck else []
        rows.append("<TR>" + "".join(cells) + "</TR>")
    what = (
        f"block {b + 1} unrolled{html.escape(_order_note(config))}, {n} layers: {terms:,} terms as a matrix"
    )
    notes = (
        f"more than {EDGE_LIMIT} layers: a row is an update X_j(k) in execution order, a cell the layer i "
        "it reads through W_ij, in layer i's colour: full for a value of this stage, pale for the last",
        "feature and transit rows: the stage of each layer's value that leaves the block",
        *_update_notes(config),
    )
    return _matrix_drawing(
        compiled, b, f"{compiled.spec.name}-block{b + 1}-schedule", _title(compiled, what, *notes), rows, what
    )


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


def _stages(config: BlockConfig) -> str:
    text = " + ".join(roman(s) for s in range(1, config.stages + 1))
    text = f"Stage{'s' if config.stages > 1 else ''} {text}"
    if config.partial is not None:
        text += f" ({roman(config.stages)}: first {config.partial} of {config.layers} updates)"
    return text


def _network_view(compiled: Compiled, expand: bool) -> Drawing:
    graph, program = compiled.graph, compiled.program
    blocks = graph_blocks(graph)
    values = program.values
    drawing = Drawing(
        f"{compiled.spec.name}-network",
        {
            "label": _title(
                compiled,
                "network" + (", blocks expanded into their tensors" if expand else ""),
                *(["each block's terms: --view schedule --block N"] if expand else []),
            ),
            "labelloc": "t",
            "rankdir": "TB",
            "newrank": "true",
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
        out = _small(f"&#8594; {dims(ops[-1].shape)}")
        drawing.node(node_id, label=_html(f"<B>{title}</B>", *lines, out), **attrs)
        return attention

    def link(entry: str, target: str, what: str, channels: int) -> None:
        text = f"{what}, {channels} ch" if what else f"{channels} ch"
        drawing.edge(entry, target, label=_html(_small(text)), weight="4")  # keep the spine straight

    drawing.node("x", label=_html("<B>input</B>", dims(values["x"].shape)), shape="oval")
    box("stem", "stem", groups["stem"])
    drawing.edge("x", "stem")
    previous = "stem"
    for b, info in enumerate(blocks):
        config: BlockConfig = info.config
        tag = b + 1
        x0 = graph.nodes[(b, 0, 0)]
        size = dims(values[x0["name"]].shape[1:])
        if expand:
            cluster = drawing.cluster(
                f"block{tag}",
                None,
                label=f"Block {tag}: {config.layers} layers x {config.channels} ch, {size}",
                style="rounded",
                color="#888888",
                fontname=_FONT,
            )
            drawn, last_row = _add_updates(drawing, compiled, b, cluster, wrap=ROW_LIMIT)
            outputs = _add_outputs(drawing, compiled, b, cluster, drawn, last_row)
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
            width = f" to {config.conv_channels} ch" if config.bottleneck_width != 1 else ""
            lines.append(f"bottleneck 1x1{width} &#8594; {kernel}" if config.bottleneck else f"W_ij {kernel}")
            if not config.share_weights:
                lines.append("each stage its own W_ij")
            drawing.node(
                f"block{tag}", label=_html(*lines), fillcolor="#eef3f8", color="#0072b2", penwidth="2"
            )
            entry = f"block{tag}"
            outputs = {}
        drawing.edge(previous, entry, label=_html(_small(f"{x0['channels']} ch")), weight="4")

        if f"transition{tag}" in groups:
            if box(f"transition{tag}", f"transition {tag}", groups[f"transition{tag}"]):
                drawing.nodes[f"transition{tag}"] |= {
                    "fillcolor": "#fff0e0",
                    "color": "#d55e00",
                    "penwidth": "2",
                }
            channels = sum(graph.nodes[n]["channels"] for n in info.transit)
            if expand:
                link(outputs["transit"], f"transition{tag}", "", channels)
            else:
                link(entry, f"transition{tag}", f"transit: {_refs(config.transit)}", channels)
            previous = f"transition{tag}"
        if f"head{tag}" not in groups:  # head kind `last`: only the last block has one
            continue
        box(f"head{tag}", f"head {tag}", groups[f"head{tag}"], fillcolor="#f3f8ee")
        channels = sum(graph.nodes[n]["channels"] for n in info.feature)
        if expand:
            link(outputs["feature"], f"head{tag}", "", channels)
        else:  # the heads in a row under their blocks
            drawing.ranks.append((None, (entry, f"head{tag}")))
            link(entry, f"head{tag}", f"feature: {_refs(config.feature)}", channels)

    heads = [f"head{b + 1}" for b in range(len(blocks)) if f"head{b + 1}" in groups]
    if "features" in groups:
        features = groups["features"][0]
        drawing.node("features", label=_html("<B>concat</B>", _small(f"&#8594; {dims(features.shape)}")))
        for head in heads:
            drawing.edge(head, "features")
        heads = ["features"]
    box("classifier", "classifier", groups["classifier"])
    drawing.edge(heads[0], "classifier")
    return drawing
