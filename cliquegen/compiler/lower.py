"""Lowering: the one place where CliqueNet semantics live.

``build_update_graph`` turns the resolved blocks into the UpdateGraph: one node per tensor,
one edge per term of the stage equations (docs/paper.md):

    Stage I:   X_j(1) = g(W0j*X0 + sum_{i before j} Wij*Xi(1))
    Stage k>1: X_j(k) = g(sum_{i before j} Wij*Xi(k) + sum_{m after j} Wmj*Xm(k-1))

"before" and "after" follow the block's update order; a partial last stage runs only the
first ``partial`` updates, and any later reference takes the newest value of each layer.
Each W_ij is one parameter for every stage, or each stage's own with ``share_weights: false``
(the edges stay the equations' terms either way).  A DenseNet block is the same clique run
for Stage I only, whose transit is the whole concatenation ``[x0, 1]``.  These shorthand
blocks expand into graph blocks (:mod:`.graph_blocks`), the form an explicit graph of the
spec language takes too, and every block is lowered by the same code (:mod:`.lower_blocks`).
A block written ``{graph: name}`` is that explicit graph, reading the previous transition's
(or the stem's) output as X0; its output (the concatenation ``output.cat`` lists, times
``res_scale``, plus X0 when ``residual``) is the one value its transition and the head read.
``schedule`` then orders the whole network (stem, blocks, transitions, head) into a Program.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..spec.limits import check_limits
from ..spec.model import BlockConfig, GraphUse, Spec, compressed
from ..spec.network import ImageSpec
from .builder import ProgramBuilder, with_norm_and_init
from .graph_blocks import clique_block, explicit_block
from .ir import BlockInfo, Program, graph_blocks
from .lower_blocks import add_block, schedule_output, schedule_updates
from .network import lower_image


@dataclass
class Compiled:
    """The result of compiling a spec: the spec, its UpdateGraph and its Program."""

    spec: Spec | ImageSpec
    graph: nx.DiGraph
    program: Program


def compile_spec(spec: Spec | ImageSpec, force: bool = False) -> Compiled:
    """Lower ``spec``; refused with ResourceError first when it is too large, unless ``force``."""
    check_limits(spec, force=force)
    if isinstance(spec, ImageSpec):
        graph, program = lower_image(spec)
        program.lint()
        return Compiled(spec, graph, program)
    blocks = spec.resolved_blocks()
    graph = build_update_graph(spec, blocks)
    program = schedule(spec, graph)
    program.lint()
    return Compiled(spec, graph, program)


def block_input_channels(spec: Spec, blocks: list[BlockConfig | GraphUse]) -> list[int]:
    """Channels of X0 per block: the stem's output, then each transition's output."""
    return spec.block_input_channels()


def value_name(block: int, layer: int, stage: int) -> str:
    """Program name of a block tensor: ``b1_x0``, ``b1_x3_s2``."""
    return f"b{block + 1}_x0" if layer == 0 else f"b{block + 1}_x{layer}_s{stage}"


def build_update_graph(spec: Spec, blocks: list[BlockConfig | GraphUse]) -> nx.DiGraph:
    """The UpdateGraph of a classification network: each shorthand block expanded
    (:func:`~.graph_blocks.clique_block`), each graph block as its graph says
    (:func:`~.graph_blocks.explicit_block`), and added as every block is
    (:func:`~.lower_blocks.add_block`)."""
    graph = nx.DiGraph(name=spec.name)
    infos: list[BlockInfo] = []
    for block, c0 in zip(blocks, block_input_channels(spec, blocks), strict=True):
        if isinstance(block, GraphUse):
            infos.append(add_block(graph, explicit_block(block.graph, block.index, c0)))
            continue
        last = block.index + 1 == len(blocks)
        # what leaves the block: a head reads only the last block's feature unless the head is
        # multi-scale, and the last block transits nothing
        expanded = clique_block(block, c0, feature=spec.head.kind == "multiscale" or last, transit=not last)
        infos.append(add_block(graph, expanded))
    graph.graph["blocks"] = tuple(infos)
    return graph


def schedule(spec: Spec, graph: nx.DiGraph) -> Program:
    """Order the whole network into straight-line code."""
    p = ProgramBuilder()
    p.part = "stem"
    x = p.op(
        "x",
        "input",
        shape=(spec.input.channels, spec.input.height, spec.input.width),
        memory_format=_memory_format(spec),
    )
    x0 = value_name(0, 0, 0)
    if spec.stem.kind == "cifar":
        p.conv(x0, "stem.conv", x, spec.stem.channels, kernel=3)
    else:
        h = p.conv("stem_conv", "stem.conv", x, spec.stem.channels, kernel=7, stride=2)
        h = p.bn_relu("stem", "stem.bn", h)
        c, hh, ww = p.shapes[h]
        p.op(
            x0,
            "max_pool",
            (h,),
            shape=(c, (hh - 1) // 2 + 1, (ww - 1) // 2 + 1),
            kernel_size=3,
            stride=2,
            padding=1,
        )

    blocks = graph_blocks(graph)
    pooled: list[str] = []
    block_outputs: list[str] = []  # the map each block hands on: to its transition, or to the head
    for b, info in enumerate(blocks):
        block = info.config
        tag = b + 1
        last = b + 1 == len(blocks)
        p.part = f"block{tag}"
        schedule_updates(p, graph, info.graph, spec.memory_efficient)
        # a graph block's output (cat [* res_scale] [+ X0]) is both its transit and its feature;
        # its unit's dropout stays inside its updates
        out = schedule_output(p, graph, info.graph) if block is None else None
        drop = f"block{tag}.dropout" if block is not None and block.dropout > 0 else None

        if not last:
            p.part = f"transition{tag}"
            h = out or p.cat(f"b{tag}_transit", [graph.nodes[n]["name"] for n in info.transit])
            block_outputs.append(h)
            channels = compressed(p.shapes[h][0], spec.transition.compression)
            h = p.bn_relu(f"t{tag}", f"transition{tag}.bn", h)
            h = p.dropout(
                f"t{tag}_drop", drop, p.conv(f"t{tag}_conv", f"transition{tag}.conv", h, channels, 1)
            )
            if spec.transition.attention:
                h = _schedule_attention(p, f"t{tag}_se", f"transition{tag}.attention", h)
            c, hh, ww = p.shapes[h]
            p.op(value_name(b + 1, 0, 0), "avg_pool", (h,), shape=(c, hh // 2, ww // 2), kernel_size=2)

        if not (last or spec.head.kind == "multiscale"):
            continue  # no head reads this block (head kind `last` reads only the last one)
        p.part = "head"
        h = out or p.cat(f"b{tag}_feature", [graph.nodes[n]["name"] for n in info.feature])
        if last:
            block_outputs.append(h)
        if spec.head.kind == "last":  # BN, ReLU, global average pool over the last block's feature
            h = p.bn_relu("h", "head.bn", h)
            pooled.append(p.op("features", "global_pool", (h,), shape=p.shapes[h][:1]))
            continue
        if spec.head.compression:
            h = p.bn_relu(f"h{tag}_compress", f"head.compress{tag}.bn", h)
            h = p.conv(f"h{tag}_compress_conv", f"head.compress{tag}.conv", h, p.shapes[h][0] // 2, 1)
            h = p.dropout(f"h{tag}_compress_drop", drop, h)
        h = p.bn_relu(f"h{tag}", f"head.bn{tag}", h)
        name = "features" if len(blocks) == 1 else f"h{tag}_pooled"
        pooled.append(p.op(name, "global_pool", (h,), shape=p.shapes[h][:1]))

    features = p.cat("features", pooled)
    p.part = "classifier"
    if spec.num_classes:
        logits = p.linear("logits", "classifier", features, spec.num_classes)
    else:  # no classifier: the model returns the pooled features
        logits = p.call("logits", p.module("classifier", "identity"), features)
    modules = {path: with_norm_and_init(decl, spec.norm, spec.init) for path, decl in p.modules.items()}
    return Program(
        spec.name,
        modules,
        p.ops,
        output=logits,
        features=features,
        classifier="classifier",
        block_outputs=tuple(block_outputs),
    )


#: Smallest side of the first block's maps from which the model runs in channels-last memory.
CHANNELS_LAST_FROM = 16


def _memory_format(spec: Spec) -> str | None:
    """``channels_last`` (converted once at entry; values and shapes unchanged) where oneDNN's
    convolutions and BatchNorm run faster on it: the CIFAR and ImageNet sizes (BENCHMARKS.md).
    Tiny maps stay NCHW: nothing to gain there, and their results stay bit-identical to a plain
    NCHW computation (channels-last sums in another order, a difference of rounding only)."""
    side = min(spec.input.height, spec.input.width)
    side = side // 4 if spec.stem.kind == "imagenet" else side
    return "channels_last" if side >= CHANNELS_LAST_FROM else None


def _schedule_attention(p: ProgramBuilder, name: str, prefix: str, x: str) -> str:
    """Squeeze-and-excitation: pool -> FC(C, C/2) -> ReLU -> FC(C/2, C) -> sigmoid -> scale."""
    channels = p.shapes[x][0]
    h = p.op(f"{name}_pool", "global_pool", (x,), shape=(channels,))
    h = p.linear(f"{name}_fc1", f"{prefix}.fc1", h, channels // 2)
    h = p.op(f"{name}_relu", "relu", (h,), shape=p.shapes[h])
    h = p.linear(f"{name}_fc2", f"{prefix}.fc2", h, channels)
    gate = p.op(f"{name}_gate", "sigmoid", (h,), shape=(channels,))
    return p.op(name, "scale", (x, gate), shape=p.shapes[x])
