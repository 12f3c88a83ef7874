"""Graph blocks: the one form every block takes before it is lowered.

A block is a set of nodes (each a tensor of ``width`` channels that stages update), an input
(``x0``, or split into one slice per node), a list of updates in execution order (each
reading its sources, concatenated in the order listed, through one convolution), a unit (what
an update computes around that convolution), a weight scheme, and what leaves the block.

The complete clique and the DenseNet pattern are shorthands that :func:`clique_block`
expands into this form; an explicit graph of the spec language (``graphs:``) becomes the
same form through :func:`explicit_block`.  :mod:`.lower` lowers every block alike.

Sources name a node and a stage: ``(j, k)`` is the value of node ``j`` after stage ``k``;
``(0, 0)`` is the whole block input X0 and ``(j, 0)`` node ``j``'s slice of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.graph import ResolvedGraph, act_of, clique_schedule
from ..spec.model import BlockConfig

#: A value in a block: (node position, stage); (0, 0) is X0, (j, 0) node j's input slice.
Ref = tuple[int, int]

#: Weight schemes: ``shared``, one W_ij per edge (source node, node) for every stage;
#: ``untied``, one W_ij per edge and stage; ``per-update``, one convolution per update.
WEIGHTS = ("shared", "untied", "per-update")


@dataclass(frozen=True)
class GraphNode:
    name: str  # an identifier: x3, ll
    width: int  # channels of its values
    label: str  # how equations write it: X3, LL


@dataclass(frozen=True)
class Unit:
    """What an update computes over its concatenated sources.

    ``pre``: BN -> ReLU -> conv (no bias) [-> dropout] [-> BN -> ReLU -> the bottleneck conv
    [-> dropout]], the CliqueNet/DenseNet unit.  ``post``: conv (bias or not) -> activation
    [-> dropout], without normalisation.
    """

    kind: str  # pre | post
    kernel: int  # of the update's convolution (a bottleneck's 1x1 W_ij: 1)
    widen: int = 1  # its output channels are widen x the node's width (a bottleneck's W_ij: 4)
    bias: bool = False
    act: str = "relu"  # relu | prelu | leaky_relu
    slope: float = 0.0  # of leaky_relu
    dropout: float = 0.0
    bottleneck_kernel: int | None = None  # pre: the layer's own conv after the W_ij


@dataclass(frozen=True)
class Update:
    node: int  # position, 1-based
    stage: int
    sources: tuple[Ref, ...]  # concatenated in this order


@dataclass(frozen=True)
class GraphBlock:
    """A block in the form the lowering reads."""

    index: int  # 0-based, in the whole network
    input_channels: int
    nodes: tuple[GraphNode, ...]  # position j is nodes[j - 1]
    split: bool  # the input is split into one slice per node (widths in node order)
    updates: tuple[Update, ...]  # in execution order
    stages: int
    unit: Unit
    weights: str  # one of WEIGHTS
    feature: tuple[Ref, ...]  # what a classification head reads; empty where none does
    output: tuple[Ref, ...]  # what the block hands on, concatenated in this order
    res_scale: float = 1.0  # output * res_scale ...
    residual: bool = False  # ... + X0
    named: bool = False  # equations write F(sources) (an explicit graph), not sums of W_ij terms
    config: BlockConfig | None = None  # the shorthand it expands, if any
    graph_name: str = ""  # the `graphs:` entry it was written as, if any

    def node(self, position: int) -> GraphNode:
        return self.nodes[position - 1]

    def conv_channels(self, position: int) -> int:
        """Output channels of the convolution of node ``position``'s updates."""
        return self.unit.widen * self.node(position).width

    def width(self, ref: Ref) -> int:
        return self.input_channels if ref == (0, 0) else self.node(ref[0]).width

    def label(self, ref: Ref) -> str:
        """``X0``, ``X3(2)``, ``LH(0)``: how the paper writes a value."""
        if ref == (0, 0):
            return "X0"
        return f"{self.node(ref[0]).label}({ref[1]})"

    def equation(self, update: Update) -> str:
        """``X3(2) = g(W13*X1(2) + W43*X4(1))``, or for an explicit graph with one convolution
        per update ``LH(1) = g(F(LL(1), LH(0)))``."""
        target = self.label((update.node, update.stage))
        if self.named and self.weights == "per-update":
            return f"{target} = g(F({', '.join(self.label(ref) for ref in update.sources)}))"
        terms = [f"{weight_label(ref[0], update.node)}*{self.label(ref)}" for ref in update.sources]
        return f"{target} = g({' + '.join(terms)})"


def weight_label(i: int, j: int) -> str:
    """``W13`` in the paper's notation; ``W1,12`` once an index has two digits."""
    return f"W{i}{j}" if i < 10 and j < 10 else f"W{i},{j}"


def clique_block(config: BlockConfig, input_channels: int, feature: bool, transit: bool) -> GraphBlock:
    """The shorthand ``{layers, channels, schedule, ...}``: a complete clique (a DenseNet with
    one stage) of BN-ReLU-conv units with one W_ij per edge, shared by every stage or each
    stage's own.  ``feature``/``transit``: whether a head reads the block and whether a
    transition follows it."""
    schedule, after_stage = clique_schedule(config.layers, config.stages, config.order, config.partial)
    updates = tuple(Update(*update) for update in schedule)

    def refs(names: tuple[str | int, ...]) -> tuple[Ref, ...]:
        return tuple(ref for name in names for ref in ([(0, 0)] if name == "x0" else after_stage[name]))

    return GraphBlock(
        index=config.index,
        input_channels=input_channels,
        nodes=tuple(GraphNode(f"x{j}", config.channels, f"X{j}") for j in range(1, config.layers + 1)),
        split=False,
        updates=updates,
        stages=config.stages,
        unit=Unit(
            kind="pre",
            kernel=config.conv_kernel,
            widen=config.conv_channels // config.channels,
            dropout=config.dropout,
            bottleneck_kernel=config.kernel if config.bottleneck else None,
        ),
        weights="shared" if config.share_weights else "untied",
        feature=refs(config.feature) if feature else (),
        output=refs(config.transit) if transit else (),
        config=config,
    )


def explicit_block(graph: ResolvedGraph, index: int, input_channels: int) -> GraphBlock:
    """A block of a ``graphs:`` entry: its updates as written (or, for ``clique:``, the
    complete clique's), its unit, weights and output."""
    unit = graph.unit
    act, slope = act_of(unit)
    bottleneck = unit.bottleneck
    updates = tuple(Update(j, stage, sources) for j, stage, sources in graph.updates)
    nodes = tuple(GraphNode(name, width, name.upper()) for name, width in graph.nodes)
    return GraphBlock(
        index=index,
        input_channels=input_channels,
        nodes=nodes,
        split=graph.split,
        updates=updates,
        stages=graph.stages,
        unit=Unit(
            kind=unit.kind,
            kernel=1 if bottleneck else unit.kernel,
            widen=bottleneck.width if bottleneck else 1,
            bias=unit.bias,
            act=act,
            slope=slope,
            dropout=unit.dropout,
            bottleneck_kernel=bottleneck.kernel if bottleneck else None,
        ),
        weights=graph.weights,
        feature=(),
        output=graph.output,
        res_scale=graph.res_scale,
        residual=graph.residual,
        named=graph.clique is None,
        graph_name=graph.name,
    )
