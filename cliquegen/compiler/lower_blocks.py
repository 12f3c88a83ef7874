"""Lowering of one block, whatever wrote it (a shorthand or an explicit graph).

:func:`add_block` puts a :class:`~.graph_blocks.GraphBlock` into the UpdateGraph: one node
per tensor (the input X0, the input slices an update reads, every update's value) and one edge
per source of an update.  :func:`schedule_updates` appends the block's updates to the Program;
each runs ONE convolution over its sources concatenated in the listed order, whatever the
weight scheme:

- ``pre`` units: the ``update`` op (BN -> ReLU -> conv over the concatenation, with the W_ij
  of the update concatenated along their input channels) [-> dropout] [-> bottleneck];
- ``post`` units: ``cat`` -> the convolution (a ``conv`` module per update, or the ``conv``
  op over the concatenated W_ij and the node's bias) -> activation [-> dropout].

Parameter names: with W_ij per edge (``shared``, ``untied``) by position, as the paper writes
them: ``w{i}_{j}`` (``_s{k}`` when untied), ``bn{j}_s{k}``, ``bias{j}``, ``act{j}``; with one
convolution per update by node name and stage: ``conv_{node}_s{k}``, ``act_{node}_s{k}``,
``bn_{node}_s{k}``.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from .builder import ProgramBuilder
from .graph_blocks import GraphBlock, Ref, Update
from .ir import BlockInfo, NodeId


def block_value(block: GraphBlock, ref: Ref) -> str:
    """Program name of a block tensor: ``b1_x0``, ``b1_x3_s2``, ``b1_ll_s0`` (a slice)."""
    tag = block.index + 1
    return f"b{tag}_x0" if ref == (0, 0) else f"b{tag}_{block.node(ref[0]).name}_s{ref[1]}"


def node_id(block: GraphBlock, ref: Ref) -> NodeId:
    return (block.index, ref[0], ref[1])


def add_block(graph: nx.DiGraph, block: GraphBlock, input_name: str | None = None) -> BlockInfo:
    """Add the block's tensors and equation terms to ``graph``; ``input_name`` is the Program
    value that is X0 (default ``b{n}_x0``)."""
    b = block.index
    x0 = node_id(block, (0, 0))
    graph.add_node(
        x0,
        block=b,
        layer=0,
        stage=0,
        step=0,
        channels=block.input_channels,
        name=input_name or block_value(block, (0, 0)),
    )
    if block.split:
        start = 0
        read = {ref for update in block.updates for ref in update.sources} | set(block.output)
        for j, node in enumerate(block.nodes, 1):
            if (j, 0) in read:
                graph.add_node(
                    node_id(block, (j, 0)),
                    block=b,
                    layer=j,
                    stage=0,
                    step=0,
                    channels=node.width,
                    name=block_value(block, (j, 0)),
                    slice=(start, start + node.width),
                )
            start += node.width
    for step, update in enumerate(block.updates, 1):
        ref = (update.node, update.stage)
        node = node_id(block, ref)
        graph.add_node(
            node,
            block=b,
            layer=update.node,
            stage=update.stage,
            step=step,
            channels=block.node(update.node).width,
            name=block_value(block, ref),
        )
        for src in update.sources:
            graph.add_edge(node_id(block, src), node, weight=(src[0], update.node))
    return BlockInfo(
        config=block.config,
        input_channels=block.input_channels,
        feature=tuple(node_id(block, ref) for ref in block.feature),
        transit=tuple(node_id(block, ref) for ref in block.output) if block.config else (),
        graph=block,
    )


def schedule_updates(
    p: ProgramBuilder, graph: nx.DiGraph, block: GraphBlock, memory_efficient: bool = False
) -> None:
    """The block's input slices, then its updates in execution order."""
    tag = block.index + 1
    x0 = graph.nodes[node_id(block, (0, 0))]["name"]
    for j in range(1, len(block.nodes) + 1):
        node = node_id(block, (j, 0))
        if node in graph:
            start, end = graph.nodes[node]["slice"]
            _, h, w = p.shapes[x0]
            name = graph.nodes[node]["name"]
            p.op(name, "slice", (x0,), shape=(end - start, h, w), start=start, end=end)
    drop = (
        p.module(f"block{tag}.dropout", "dropout", p=block.unit.dropout) if block.unit.dropout > 0 else None
    )
    for update in block.updates:
        if block.unit.kind == "pre":
            _pre_update(p, graph, block, update, drop, memory_efficient)
        else:
            _post_update(p, graph, block, update, drop)


def _names(block: GraphBlock, update: Update) -> dict[str, Any]:
    """The update's parameter paths (see the module docstring)."""
    prefix, j, k = f"block{block.index + 1}", update.node, update.stage
    if block.weights == "per-update":
        node = block.node(j).name
        return {
            "weights": [f"{prefix}.w_{node}_s{k}"],
            "conv": f"{prefix}.conv_{node}_s{k}",
            "bias": None,
            "act": f"{prefix}.act_{node}_s{k}",
            "bn": f"{prefix}.bn_{node}_s{k}",
            "bottleneck_bn": f"{prefix}.bottleneck_bn_{node}_s{k}",
            "bottleneck": f"{prefix}.bottleneck_{node}_s{k}",
        }
    own = "" if block.weights == "shared" else f"_s{k}"
    return {
        "weights": [f"{prefix}.w{i}_{j}{own}" for i, _ in update.sources],
        "conv": None,
        "bias": f"{prefix}.bias{j}{own}",
        "act": f"{prefix}.act{j}{own}",
        "bn": f"{prefix}.bn{j}_s{k}",
        "bottleneck_bn": f"{prefix}.bottleneck_bn{j}_s{k}",
        "bottleneck": f"{prefix}.bottleneck{j}{own}",
    }


def _weights(p: ProgramBuilder, block: GraphBlock, update: Update, paths: list[str]) -> tuple[str, ...]:
    """Declare the update's conv weights: one per source, or one over all of them."""
    out, kk = block.conv_channels(update.node), block.unit.kernel
    if len(paths) == 1 and len(update.sources) > 1:
        widths = [sum(block.width(ref) for ref in update.sources)]
    else:
        widths = [block.width(ref) for ref in update.sources]
    return tuple(
        p.module(path, "weight", shape=(out, width, kk, kk))
        for path, width in zip(paths, widths, strict=True)
    )


def _pre_update(
    p: ProgramBuilder,
    graph: nx.DiGraph,
    block: GraphBlock,
    update: Update,
    drop: str | None,
    memory_efficient: bool,
) -> None:
    """BN-ReLU over the concatenated sources, then one conv whose weight is the concatenation
    of the update's W_ij (then the layer's bottleneck conv)."""
    unit, names = block.unit, _names(block, update)
    node = node_id(block, (update.node, update.stage))
    inputs = [graph.nodes[node_id(block, ref)]["name"] for ref in update.sources]
    weights = _weights(p, block, update, names["weights"])
    in_channels = sum(block.width(ref) for ref in update.sources)
    bn = p.module(names["bn"], "batch_norm", num_features=in_channels)
    _, h, w = p.shapes[inputs[0]]
    width = block.node(update.node).width
    wide = block.conv_channels(update.node)
    macs = in_channels * wide * unit.kernel**2 * h * w
    attrs: dict[str, Any] = {
        "bn": bn,
        "weights": weights,
        "padding": unit.kernel // 2,
        "dropout": drop,
        "bottleneck_bn": None,
        "bottleneck_conv": None,
        "node": node,
        "memory_efficient": memory_efficient,
    }
    if unit.bottleneck_kernel is not None:
        kernel = unit.bottleneck_kernel
        attrs["bottleneck_bn"] = p.module(names["bottleneck_bn"], "batch_norm", num_features=wide)
        attrs["bottleneck_conv"] = p.module(
            names["bottleneck"],
            "conv2d",
            in_channels=wide,
            out_channels=width,
            kernel_size=kernel,
            stride=1,
            padding=kernel // 2,
        )
        macs += wide * width * kernel**2 * h * w
    p.op(
        graph.nodes[node]["name"],
        "update",
        inputs,
        shape=(width, h, w),
        macs=macs,
        comment=block.equation(update),
        **attrs,
    )


def _post_update(
    p: ProgramBuilder, graph: nx.DiGraph, block: GraphBlock, update: Update, drop: str | None
) -> None:
    """cat -> conv (bias or not) -> activation [-> dropout], the equation on its first op."""
    unit, names = block.unit, _names(block, update)
    name = graph.nodes[node_id(block, (update.node, update.stage))]["name"]
    inputs = [graph.nodes[node_id(block, ref)]["name"] for ref in update.sources]
    comment: str | None = block.equation(update)  # on the update's first op
    x = p.cat(f"{name}_in", inputs, comment=comment) if len(inputs) > 1 else inputs[0]
    comment = None if len(inputs) > 1 else comment
    c, h, w = p.shapes[x]
    width = block.node(update.node).width
    act = f"{name}_act" if drop else name
    conv = f"{name}_conv"
    if names["conv"]:  # one convolution module per update
        p.module(
            names["conv"], "conv", in_channels=c, out_channels=width, kernel_size=unit.kernel, bias=unit.bias
        )
        p.op(
            conv,
            "call",
            (x,),
            shape=(width, h, w),
            macs=c * width * unit.kernel**2 * h * w,
            comment=comment,
            module=names["conv"],
        )
    else:  # the W_ij of the update, concatenated, and the node's bias
        weights = _weights(p, block, update, names["weights"])
        bias = p.module(names["bias"], "bias", channels=width) if unit.bias else None
        p.op(
            conv,
            "conv",
            (x,),
            shape=(width, h, w),
            macs=c * width * unit.kernel**2 * h * w,
            comment=comment,
            weights=weights,
            bias=bias,
            padding=unit.kernel // 2,
        )
    h_act = p.activation(act, conv, unit.act, unit.slope, names["act"])
    if drop:
        p.call(name, drop, h_act)


def schedule_output(p: ProgramBuilder, graph: nx.DiGraph, block: GraphBlock) -> str:
    """What the block hands on: cat(output) [* res_scale] [+ X0]; returns its value name."""
    tag = block.index + 1
    x0 = graph.nodes[node_id(block, (0, 0))]["name"]
    names = [graph.nodes[node_id(block, ref)]["name"] for ref in block.output]
    plain = block.res_scale == 1 and not block.residual
    h = p.cat(f"b{tag}_out" if plain else f"b{tag}_cat", names)
    if block.res_scale != 1:  # x * 1 is exact: no op for it
        last = not block.residual
        h = p.op(
            f"b{tag}_out" if last else f"b{tag}_scaled",
            "mul",
            (h,),
            shape=p.shapes[h],
            factor=block.res_scale,
        )
    if block.residual:
        h = p.op(f"b{tag}_out", "add", (h, x0), shape=p.shapes[h])
    return h
