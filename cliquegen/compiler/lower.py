"""Lowering: the one place where CliqueNet semantics live.

``build_update_graph`` turns the resolved blocks into the UpdateGraph: one node per tensor,
one edge per term of the stage equations (docs/paper.md):

    Stage I:   X_j(1) = g(W0j*X0 + sum_{i before j} Wij*Xi(1))
    Stage k>1: X_j(k) = g(sum_{i before j} Wij*Xi(k) + sum_{m after j} Wmj*Xm(k-1))

"before" and "after" follow the block's update order; a partial last stage runs only the
first ``partial`` updates, and any later reference takes the newest value of each layer.
Each W_ij is one parameter for every stage, or each stage's own with ``share_weights: false``
(the edges stay the equations' terms either way).  A DenseNet block is the same clique run
for Stage I only, whose transit is the whole concatenation ``[x0, 1]``.
``schedule`` then orders the whole network (stem, blocks, transitions, head) into a Program.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from ..spec.limits import check_limits
from ..spec.model import BlockConfig, InitSpec, NormSpec, Spec, compressed
from .ir import BlockInfo, ModuleDecl, NodeId, Op, Program, equation, graph_blocks


@dataclass
class Compiled:
    """The result of compiling a spec: the spec, its UpdateGraph and its Program."""

    spec: Spec
    graph: nx.DiGraph
    program: Program


def compile_spec(spec: Spec, force: bool = False) -> Compiled:
    """Lower ``spec``; refused with ResourceError first when it is too large, unless ``force``."""
    check_limits(spec, force=force)
    blocks = spec.resolved_blocks()
    graph = build_update_graph(spec, blocks)
    program = schedule(spec, graph)
    program.lint()
    return Compiled(spec, graph, program)


def block_input_channels(spec: Spec, blocks: list[BlockConfig]) -> list[int]:
    """Channels of X0 per block: the stem's output, then each transition's output."""
    return spec.block_input_channels()


def value_name(block: int, layer: int, stage: int) -> str:
    """Program name of a block tensor: ``b1_x0``, ``b1_x3_s2``."""
    return f"b{block + 1}_x0" if layer == 0 else f"b{block + 1}_x{layer}_s{stage}"


def build_update_graph(spec: Spec, blocks: list[BlockConfig]) -> nx.DiGraph:
    graph = nx.DiGraph(name=spec.name)
    infos: list[BlockInfo] = []
    for block, c0 in zip(blocks, block_input_channels(spec, blocks), strict=True):
        b = block.index
        x0: NodeId = (b, 0, 0)
        graph.add_node(x0, block=b, layer=0, stage=0, step=0, channels=c0, name=value_name(b, 0, 0))
        newest: dict[int, NodeId] = {}  # layer -> its newest tensor
        after_stage: dict[int, list[NodeId]] = {}  # stage -> newest tensor of each layer, by layer
        step = 0
        for stage in range(1, block.stages + 1):
            order = block.order
            if stage == block.stages and block.partial is not None:
                order = order[: block.partial]
            for j in order:
                step += 1
                node: NodeId = (b, j, stage)
                graph.add_node(
                    node,
                    block=b,
                    layer=j,
                    stage=stage,
                    step=step,
                    channels=block.channels,
                    name=value_name(b, j, stage),
                )
                if stage == 1:
                    graph.add_edge(x0, node, weight=(0, j))
                for i, src in newest.items():
                    if i != j:
                        graph.add_edge(src, node, weight=(i, j))
                newest[j] = node
            after_stage[stage] = [newest[j] for j in sorted(newest)]

        infos.append(
            BlockInfo(
                config=block,
                input_channels=c0,
                # what leaves the block: a head reads only the last block's feature unless the
                # head is multi-scale, and the last block transits nothing
                feature=_tensors(block.feature, x0, after_stage)
                if spec.head.kind == "multiscale" or b + 1 == len(blocks)
                else (),
                transit=_tensors(block.transit, x0, after_stage) if b + 1 < len(blocks) else (),
            )
        )
    graph.graph["blocks"] = tuple(infos)
    return graph


def _tensors(
    refs: tuple[str | int, ...], x0: NodeId, after_stage: dict[int, list[NodeId]]
) -> tuple[NodeId, ...]:
    """The tensors a feature or transit names, concatenated in the order listed."""
    return tuple(node for ref in refs for node in ([x0] if ref == "x0" else after_stage[ref]))


class _ProgramBuilder:
    """Declares modules and appends ops, tracking shapes and MACs."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleDecl] = {}
        self.ops: list[Op] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.part = ""

    def module(self, path: str, kind: str, **args: Any) -> str:
        if path not in self.modules:
            self.modules[path] = ModuleDecl(path, kind, args)
        return path

    def op(
        self,
        name: str,
        kind: str,
        inputs: tuple[str, ...] | list[str] = (),
        *,
        shape: tuple[int, ...],
        macs: int = 0,
        comment: str | None = None,
        **attrs: Any,
    ) -> str:
        self.ops.append(Op(name, kind, tuple(inputs), attrs, self.part, comment, shape, macs))
        self.shapes[name] = shape
        return name

    def call(
        self, name: str, module: str, x: str, *, shape: tuple[int, ...] | None = None, macs: int = 0
    ) -> str:
        return self.op(name, "call", (x,), shape=shape or self.shapes[x], macs=macs, module=module)

    def cat(self, name: str, inputs: list[str]) -> str:
        if len(inputs) == 1:
            return inputs[0]
        channels = sum(self.shapes[x][0] for x in inputs)
        return self.op(name, "cat", inputs, shape=(channels, *self.shapes[inputs[0]][1:]))

    def bn_relu(self, name: str, module: str, x: str) -> str:
        self.module(module, "batch_norm", num_features=self.shapes[x][0])
        h = self.call(f"{name}_bn", module, x)
        return self.op(f"{name}_relu", "relu", (h,), shape=self.shapes[x], inplace=True)  # only it reads h

    def conv(self, name: str, module: str, x: str, out: int, kernel: int, stride: int = 1) -> str:
        c, h, w = self.shapes[x]
        padding = kernel // 2
        self.module(
            module,
            "conv2d",
            in_channels=c,
            out_channels=out,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
        )
        h, w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
        return self.call(name, module, x, shape=(out, h, w), macs=c * out * kernel * kernel * h * w)

    def linear(self, name: str, module: str, x: str, out: int) -> str:
        (features,) = self.shapes[x]
        self.module(module, "linear", in_features=features, out_features=out)
        return self.call(name, module, x, shape=(out,), macs=features * out)

    def dropout(self, name: str, module: str | None, x: str) -> str:
        return x if module is None else self.call(name, module, x)


def schedule(spec: Spec, graph: nx.DiGraph) -> Program:
    """Order the whole network into straight-line code."""
    p = _ProgramBuilder()
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
        p.part = f"block{tag}"
        drop = p.module(f"block{tag}.dropout", "dropout", p=block.dropout) if block.dropout > 0 else None
        updates = sorted(
            (n for n in graph.nodes if n[0] == b and n[1] > 0), key=lambda n: graph.nodes[n]["step"]
        )
        for node in updates:
            _schedule_update(p, graph, block, node, drop, spec.memory_efficient)

        names = [graph.nodes[n]["name"] for n in info.transit]
        if b + 1 < len(blocks):
            p.part = f"transition{tag}"
            h = p.cat(f"b{tag}_transit", names)
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

        if not info.feature:
            continue  # no head reads this block (head kind `last` reads only the last one)
        p.part = "head"
        h = p.cat(f"b{tag}_feature", [graph.nodes[n]["name"] for n in info.feature])
        if b + 1 == len(blocks):
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
    modules = {path: _with_norm_and_init(decl, spec) for path, decl in p.modules.items()}
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


def _schedule_update(
    p: _ProgramBuilder,
    graph: nx.DiGraph,
    block: BlockConfig,
    node: NodeId,
    drop: str | None,
    memory_efficient: bool = False,
) -> None:
    """One stage update: BN-ReLU over the concatenated inputs, then one conv whose weight is
    the concatenation of the W_ij (then the layer's bottleneck conv).  The W_ij and the
    bottleneck conv are shared by every stage, or, with ``share_weights: false``, each
    stage's own (``w1_2_s2``, ``bottleneck1_s2``)."""
    b, j, stage = node
    tag, k, width = b + 1, block.channels, block.conv_channels
    own = "" if block.share_weights else f"_s{stage}"
    sources = sorted(graph.predecessors(node), key=lambda n: n[1])
    inputs = [graph.nodes[n]["name"] for n in sources]
    weights = []
    for src in sources:
        i = src[1]
        kk = block.conv_kernel
        shape = (width, graph.nodes[src]["channels"], kk, kk)
        weights.append(p.module(f"block{tag}.w{i}_{j}{own}", "weight", shape=shape))
    in_channels = sum(graph.nodes[n]["channels"] for n in sources)
    bn = p.module(f"block{tag}.bn{j}_s{stage}", "batch_norm", num_features=in_channels)
    _, h, w = p.shapes[inputs[0]]
    macs = in_channels * width * block.conv_kernel**2 * h * w
    attrs: dict[str, Any] = {
        "bn": bn,
        "weights": tuple(weights),
        "padding": block.conv_kernel // 2,
        "dropout": drop,
        "bottleneck_bn": None,
        "bottleneck_conv": None,
        "node": node,
        "memory_efficient": memory_efficient,
    }
    if block.bottleneck:
        attrs["bottleneck_bn"] = p.module(
            f"block{tag}.bottleneck_bn{j}_s{stage}", "batch_norm", num_features=width
        )
        attrs["bottleneck_conv"] = p.module(
            f"block{tag}.bottleneck{j}{own}",
            "conv2d",
            in_channels=width,
            out_channels=k,
            kernel_size=block.kernel,
            stride=1,
            padding=block.kernel // 2,
        )
        macs += width * k * block.kernel**2 * h * w
    p.op(
        graph.nodes[node]["name"],
        "update",
        inputs,
        shape=(k, h, w),
        macs=macs,
        comment=equation(graph, node),
        **attrs,
    )


def _schedule_attention(p: _ProgramBuilder, name: str, prefix: str, x: str) -> str:
    """Squeeze-and-excitation: pool -> FC(C, C/2) -> ReLU -> FC(C/2, C) -> sigmoid -> scale."""
    channels = p.shapes[x][0]
    h = p.op(f"{name}_pool", "global_pool", (x,), shape=(channels,))
    h = p.linear(f"{name}_fc1", f"{prefix}.fc1", h, channels // 2)
    h = p.op(f"{name}_relu", "relu", (h,), shape=p.shapes[h])
    h = p.linear(f"{name}_fc2", f"{prefix}.fc2", h, channels)
    gate = p.op(f"{name}_gate", "sigmoid", (h,), shape=(channels,))
    return p.op(name, "scale", (x, gate), shape=p.shapes[x])


def _with_norm_and_init(decl: ModuleDecl, spec: Spec) -> ModuleDecl:
    """The spec's ``norm`` and ``init`` settings as constructor arguments, where they differ
    from the defaults (so a spec that does not set them declares exactly what it did before).
    BatchNorm takes eps and momentum together: its constructor's arguments are positional."""
    if decl.kind == "batch_norm" and spec.norm != NormSpec():
        extra: dict[str, Any] = {"eps": spec.norm.eps, "momentum": spec.norm.momentum}
    elif decl.kind in ("weight", "conv2d") and spec.init.conv != InitSpec().conv:
        extra = {"init": spec.init.conv}
    elif decl.kind == "linear" and spec.init.linear != InitSpec().linear:
        extra = {"init": spec.init.linear}
    else:
        return decl
    return replace(decl, args={**decl.args, **extra})
