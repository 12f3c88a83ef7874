"""What the block, schedule and network views share: a block's tensors and terms in execution
order, the notes on what each update computes, and the feature and transit nodes."""

from __future__ import annotations

import html
from collections.abc import Iterable

import networkx as nx

from ..compiler.ir import NodeId, graph_blocks
from ..compiler.lower import Compiled
from ..compiler.naming import roman
from ..spec.model import BlockConfig
from .backend import Drawing
from .style import OUTPUT_EDGE, OUTPUT_FILL, html_label, kernel_text, small, tensor_text


def block_nodes(graph: nx.DiGraph, b: int) -> list[NodeId]:
    """The tensors of block ``b`` in execution order (X0 first)."""
    return sorted((n for n in graph.nodes if n[0] == b), key=lambda n: graph.nodes[n]["step"])


def block_edges(graph: nx.DiGraph, b: int) -> list[tuple[NodeId, NodeId]]:
    """The stage-equation terms of block ``b``, by the step of their target, then source."""
    step = {n: graph.nodes[n]["step"] for n in block_nodes(graph, b)}
    edges = [(u, v) for u, v in graph.edges if v[0] == b]
    return sorted(edges, key=lambda e: (step[e[1]], step[e[0]]))


def title_label(compiled: Compiled, what: str, *notes: str) -> str:
    return html_label(f"<B>{html.escape(compiled.spec.name)}</B>: {what}", *map(small, notes))


def bottleneck_label(config: BlockConfig) -> str | None:
    """What an update does after its W_ij in a bottleneck block, for the node labels."""
    return (
        f'<FONT POINT-SIZE="7">1x1&#8594;{kernel_text(config.kernel)}</FONT>' if config.bottleneck else None
    )


def update_notes(config: BlockConfig) -> list[str]:
    """Lines saying what every update of the block computes and which weights it uses."""
    own = "the layer's" if config.share_weights else "the stage's own"
    if config.bottleneck:
        width = f" ({config.bottleneck_width}k)" if config.bottleneck_width != 1 else ""
        text = (
            f"each update: BN-ReLU, the 1x1 W_ij to {config.conv_channels} ch{width}, BN-ReLU, "
            f"{own} {kernel_text(config.kernel)} conv to {config.channels} ch (the bottleneck)"
        )
    else:
        text = f"each update: BN-ReLU, then the {kernel_text(config.kernel)} W_ij to {config.channels} ch"
    if not config.share_weights:
        return [text, "every stage has its own W_ij (share_weights: false)"]
    if config.stages == 1:
        return [text, "one stage: each layer reads X0 and every layer before it (a dense block)"]
    return [text]


def block_outputs(compiled: Compiled, b: int) -> list[tuple[str, list[NodeId], str]]:
    """(kind, tensors, where they go) of the values that leave block ``b``: the feature when
    a head reads it (head kind ``last`` reads only the last block's), the transit unless
    ``b`` is the last block."""
    info = graph_blocks(compiled.graph)[b]
    config: BlockConfig = info.config
    outputs = []
    if info.feature:
        outputs.append(("feature", info.feature, f"to head {b + 1}: {refs_text(config.feature)}"))
    if info.transit:
        outputs.append(("transit", info.transit, f"to transition {b + 1}: {refs_text(config.transit)}"))
    return outputs


def refs_text(refs: Iterable[str | int]) -> str:
    return " + ".join(tensor_text(0) if r == "x0" else f"Stage {roman(int(r))}" for r in refs)


def output_node(
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
        label=html_label(f"<B>{kind}</B> {where}", *map(small, lines), small(f"{channels} ch")),
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


def output_edge(drawing: Drawing, src: str, dst: str, **attrs: str) -> None:
    drawing.edge(src, dst, color=OUTPUT_EDGE, arrowsize="0.5", penwidth="0.8", style="solid", **attrs)
