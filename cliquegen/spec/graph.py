"""Explicit graph blocks: the ``graphs:`` section of a spec.

A graph names its nodes (each a tensor of ``width`` channels), says what its input is (``x0``
whole, or ``split`` into one slice per node in node order), and lists per stage which nodes
it updates, in which order, and what each update reads, concatenated in the order written::

    graphs:
      subband-clique:
        nodes: {ll: 32, lh: 32, hl: 32, hh: 32}
        input: split
        unit: {kind: post, kernel: 3, bias: true, act: prelu}
        weights: per-update
        stages:
          - sources: {ll: [ll(0)], lh: [ll(1), lh(0)], hl: [ll(1), hl(0)], hh: [ll(1), lh(1), hl(1), hh(0)]}
          - sources: {hh: [hh(1)], hl: [hl(1), hh(2)], lh: [lh(1), hh(2)], ll: [ll(1), lh(2), hl(2), hh(2)]}
        output: {cat: [ll, lh, hl, hh], residual: true}

A source is ``x0`` (the whole input), ``name(0)`` (the node's input slice) or ``name(k)``
(its value after stage k, which must be computed before the update: in an earlier stage, or
earlier in this one).  An output entry may also be a bare ``name``: the node's final value.
``clique: {layers, channels, stages}`` instead of ``nodes`` and ``stages`` is the complete
clique (CliqueNet's equations, nodes ``x1`` ... ``xn``), the shorthand of classification blocks.

Checks that need the whole graph raise :class:`~.model.SpecSemanticError` problems located
at the offending YAML node; :func:`resolve_graph` gives the checked graph as plain data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .base import NAME_PATTERN, BottleneckWidth, Kernel, Loc, PositiveInt, StrictModel

#: A graph's name in ``graphs:``, as a block or a group names it.
GraphName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100)]
NodeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
RefText = Annotated[str, StringConstraints(max_length=60)]

#: A value in a graph: (node position, stage); (0, 0) is x0, (j, 0) node j's input slice.
Ref = tuple[int, int]

_REF = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(?:\(\s*(\d+)\s*\))?\s*$")


class LeakyReLUSpec(StrictModel):
    """``{leaky_relu: 0.01}``: LeakyReLU with that negative slope."""

    leaky_relu: Annotated[float, Field(ge=0.0, lt=1.0)]


#: ``relu``, ``prelu`` (one learned slope per channel, starting at 0.25) or ``{leaky_relu: s}``.
Activation = Literal["relu", "prelu"] | LeakyReLUSpec


class BottleneckSpec(StrictModel):
    """Pre-activation units only: the W_ij are 1x1 convs to ``width`` x the node width, then
    BN -> ReLU -> the node's own ``kernel`` conv (DenseNet-B)."""

    width: BottleneckWidth = 4
    kernel: Kernel = 3


class UnitSpec(StrictModel):
    """What an update computes over its concatenated sources.

    ``pre``: BN -> ReLU -> conv (CliqueNet, DenseNet); ``post``: conv -> activation, no
    normalisation (EDSR-style super-resolution networks)."""

    kind: Literal["pre", "post"] = "pre"
    kernel: Kernel = 3
    bias: bool = Field(False, description="post units: the convolution has a bias")
    act: Activation = Field("relu", description="post units: relu, prelu or {leaky_relu: slope}")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    bottleneck: BottleneckSpec | None = None


class GraphStageSpec(StrictModel):
    """One stage: the nodes it updates with their sources, in update order (or ``order``)."""

    order: list[NodeName] | None = Field(None, description="update order; default: the order of `sources`")
    sources: Annotated[dict[NodeName, Annotated[list[RefText], Field(min_length=1)]], Field(min_length=1)]


class GraphOutputSpec(StrictModel):
    """What the block hands on: cat(``cat``) * res_scale [+ x0]."""

    cat: Annotated[list[RefText], Field(min_length=1)] | None = Field(
        None, description="values concatenated; default: every node's final value, in node order"
    )
    res_scale: Annotated[float, Field(gt=0.0, le=1000.0)] = 1.0
    residual: bool = Field(False, description="add the block input (its width must equal the output's)")


class CliqueSpec(StrictModel):
    """The complete clique: nodes x1 ... x<layers> of ``channels`` each, updated by
    CliqueNet's stage equations (Stage I reads x0 and the nodes before; later stages the
    newest value of every other node)."""

    layers: PositiveInt
    channels: PositiveInt
    stages: Annotated[int, Field(ge=1, le=64)] = 2
    order: list[PositiveInt] | None = None
    partial: Annotated[int, Field(ge=0)] | None = None


class GraphSpec(StrictModel):
    """A block as an explicit graph (or ``clique:``, the complete one)."""

    clique: CliqueSpec | None = None
    nodes: Annotated[dict[NodeName, PositiveInt], Field(min_length=1, max_length=4096)] | None = None
    input: Literal["whole", "split"] = Field(
        "whole", description="whole: x0 is one tensor; split: x0 is the nodes' slices, in node order"
    )
    unit: UnitSpec = UnitSpec()
    weights: Literal["shared", "untied", "per-update"] = Field(
        "shared",
        description="shared: one W_ij per edge for every stage; untied: one W_ij per edge and stage; "
        "per-update: one convolution per update",
    )
    stages: Annotated[list[GraphStageSpec], Field(min_length=1, max_length=64)] | None = None
    output: GraphOutputSpec = GraphOutputSpec()


@dataclass(frozen=True)
class ResolvedGraph:
    """A checked graph as plain data (positions are 1-based, in node order)."""

    name: str
    nodes: tuple[tuple[str, int], ...]  # (name, width)
    split: bool
    #: (node, stage, sources) in execution order (a clique's as its equations give them)
    updates: tuple[tuple[int, int, tuple[Ref, ...]], ...]
    clique: CliqueSpec | None
    stages: int
    unit: UnitSpec
    weights: str
    output: tuple[Ref, ...]
    res_scale: float
    residual: bool

    @property
    def split_width(self) -> int:
        return sum(width for _, width in self.nodes)

    def width(self, ref: Ref, input_channels: int) -> int:
        """Channels of a value when the block input has ``input_channels``."""
        return input_channels if ref == (0, 0) else self.nodes[ref[0] - 1][1]

    def output_width(self, input_channels: int) -> int:
        """Channels of the block output when the block input has ``input_channels``."""
        return sum(self.width(ref, input_channels) for ref in self.output)


def block_fit(graph: ResolvedGraph, channels: int) -> str:
    """Why a block of ``graph`` cannot read an input of ``channels`` (empty when it can)."""
    if graph.split and graph.split_width != channels:
        widths = " + ".join(str(width) for _, width in graph.nodes)
        return (
            f"graph `{graph.name}` splits its input into {widths} = {graph.split_width} channels, "
            f"but it gets {channels}"
        )
    if graph.residual and graph.output_width(channels) != channels:
        return (
            f"graph `{graph.name}` adds its input to its output (residual), but the output has "
            f"{graph.output_width(channels)} channels and the input {channels}"
        )
    return ""


def act_of(unit: UnitSpec) -> tuple[str, float]:
    """The unit's activation as (kind, slope)."""
    if isinstance(unit.act, LeakyReLUSpec):
        return "leaky_relu", unit.act.leaky_relu
    return unit.act, 0.0


def resolve_graph(
    name: str, graph: GraphSpec, loc: Loc
) -> tuple[ResolvedGraph | None, list[tuple[Loc, str]]]:
    """Check ``graph`` (at ``loc`` in the file); the resolved graph, or None and the problems."""
    problems: list[tuple[Loc, str]] = []
    problems += _unit_problems(graph.unit, (*loc, "unit"))
    if (graph.clique is None) == (graph.nodes is None):
        problems.append((loc, f"graph `{name}` needs either `nodes` and `stages` or `clique`, not both"))
        return None, problems
    if graph.clique is not None:
        nodes, updated, cl_problems = _clique_shape(name, graph, loc)
        problems += cl_problems
        if cl_problems:
            return None, problems
        clique = graph.clique
        order = tuple(clique.order) if clique.order else tuple(range(1, clique.layers + 1))
        updates, _ = clique_schedule(clique.layers, clique.stages, order, clique.partial)
        stages = clique.stages
    else:
        nodes = tuple(graph.nodes.items())
        if "x0" in graph.nodes:
            problems.append(((*loc, "nodes", "x0"), "`x0` names the block input; give the node another name"))
        if graph.stages is None:
            problems.append(((*loc,), f"graph `{name}` lists nodes but no `stages`"))
            return None, problems
        updates, updated, st_problems = _stages(graph, nodes, loc)
        problems += st_problems
        stages = len(graph.stages)
    positions = {node: j for j, (node, _) in enumerate(nodes, 1)}
    output, out_problems = _output(graph, positions, updated, stages, (*loc, "output"))
    problems += out_problems
    if problems:
        return None, problems
    return (
        ResolvedGraph(
            name=name,
            nodes=nodes,
            split=graph.input == "split",
            updates=updates,
            clique=graph.clique,
            stages=stages,
            unit=graph.unit,
            weights=graph.weights,
            output=output,
            res_scale=graph.output.res_scale,
            residual=graph.output.residual,
        ),
        [],
    )


def _unit_problems(unit: UnitSpec, loc: Loc) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if unit.kind == "pre":
        if unit.act != "relu":
            problems.append(
                ((*loc, "act"), "pre-activation units (BN -> ReLU -> conv) use relu; use kind: post")
            )
        if unit.bias:
            problems.append(
                ((*loc, "bias"), "pre-activation units have no conv bias (BN follows); use kind: post")
            )
    elif unit.bottleneck is not None:
        problems.append(((*loc, "bottleneck"), "a bottleneck belongs to pre-activation units (kind: pre)"))
    return problems


def clique_schedule(
    layers: int, stages: int, order: tuple[int, ...], partial: int | None
) -> tuple[tuple[tuple[int, int, tuple[Ref, ...]], ...], dict[int, tuple[Ref, ...]]]:
    """The complete clique's updates (node, stage, sources) in execution order (docs/paper.md)
    and, per stage, the newest value of each layer after it (by layer)::

        Stage I:   X_j(1) = g(W0j*X0 + sum_{i before j} Wij*Xi(1))
        Stage k>1: X_j(k) = g(sum_{i before j} Wij*Xi(k) + sum_{m after j} Wmj*Xm(k-1))

    "before" and "after" follow ``order``; a partial last stage runs only its first
    ``partial`` updates, and any later reference takes the newest value of each layer.
    Sources are concatenated by layer, X0 first.
    """
    newest: dict[int, Ref] = {}
    after_stage: dict[int, tuple[Ref, ...]] = {}
    updates = []
    for stage in range(1, stages + 1):
        run = order[:partial] if stage == stages and partial is not None else order
        for j in run:
            sources = [(0, 0)] if stage == 1 else []
            sources += [newest[i] for i in sorted(newest) if i != j]
            updates.append((j, stage, tuple(sources)))
            newest[j] = (j, stage)
        after_stage[stage] = tuple(newest[j] for j in sorted(newest))
    return tuple(updates), after_stage


def _clique_shape(
    name: str, graph: GraphSpec, loc: Loc
) -> tuple[tuple[tuple[str, int], ...], dict[int, set[int]], list[tuple[Loc, str]]]:
    """The clique's nodes, the nodes each stage updates, and the clique's own problems."""
    clique, at = graph.clique, (*loc, "clique")
    n, problems = clique.layers, []
    order = clique.order or list(range(1, n + 1))
    if graph.stages is not None:
        problems.append(((*loc, "stages"), "`clique` computes its own stages; remove `stages` or `clique`"))
    if graph.input == "split":
        problems.append(((*loc, "input"), "the complete clique reads x0 whole; input: split needs `nodes`"))
    if sorted(order) != list(range(1, n + 1)):
        problems.append(((*at, "order"), f"order must be a permutation of 1..{n}, got {order}"))
    if clique.stages >= 2 and n < 2:
        problems.append(((*at, "stages"), "stage II needs at least 2 layers; use stages: 1"))
    if clique.partial is not None and clique.stages < 2:
        problems.append(((*at, "partial"), "partial applies to Stage II and later"))
    elif clique.partial is not None and clique.partial > n:
        problems.append(((*at, "partial"), f"partial: {clique.partial} exceeds the layer count ({n})"))
    nodes = tuple((f"x{j}", clique.channels) for j in range(1, n + 1))
    updated = {stage: set(range(1, n + 1)) for stage in range(1, clique.stages + 1)}
    if clique.partial is not None and not problems:
        updated[clique.stages] = set(order[: clique.partial])
    return nodes, updated, problems


def parse_ref(text: str, positions: dict[str, int]) -> tuple[Ref | None, str | None, str]:
    """``(ref, None, "")`` for ``x0`` / ``name(k)``; ``(None, name, "")`` for a bare name;
    ``(None, None, message)`` when the text is not a reference to a node of the graph."""
    match = _REF.match(text)
    if not match:
        return None, None, f"`{text}` is not a reference: write x0, a node with its stage (lh(1)), or a node"
    node, stage = match.group(1), match.group(2)
    if node == "x0":
        if stage is not None:
            return None, None, "x0 is the block input; write `x0` without a stage"
        return (0, 0), None, ""
    if node not in positions:
        known = ", ".join(positions)
        return None, None, f"unknown node `{node}`; the nodes are {known}"
    if stage is None:
        return None, node, ""
    return (positions[node], int(stage)), None, ""


def _stages(
    graph: GraphSpec, nodes: tuple[tuple[str, int], ...], loc: Loc
) -> tuple[tuple[tuple[int, int, tuple[Ref, ...]], ...], dict[int, set[int]], list[tuple[Loc, str]]]:
    """The updates in execution order, the nodes each stage updates, and the problems."""
    positions = {node: j for j, (node, _) in enumerate(nodes, 1)}
    known = ", ".join(positions)
    problems: list[tuple[Loc, str]] = []
    updates = []
    updated: dict[int, set[int]] = {}
    for s, stage in enumerate(graph.stages, 1):
        at = (*loc, "stages", s - 1)
        for node in stage.sources:
            if node not in positions:
                problems.append(((*at, "sources", node), f"unknown node `{node}`; the nodes are {known}"))
        order = list(stage.sources)
        if stage.order is not None:
            order = stage.order
            for i, node in enumerate(stage.order):
                if node not in stage.sources:
                    message = f"`{node}` has no sources in stage {s}; list what it reads under `sources`"
                    problems.append(((*at, "order", i), message))
                elif node in stage.order[:i]:
                    problems.append(((*at, "order", i), f"`{node}` is listed twice"))
            left_out = [node for node in stage.sources if node not in stage.order]
            if left_out:
                problems.append(
                    ((*at, "order"), f"order leaves out {', '.join(left_out)}, which stage {s} updates")
                )
        this_stage = {positions[node] for node in order if node in positions and node in stage.sources}
        done: set[int] = set()
        for node in dict.fromkeys(order):
            if node not in positions or node not in stage.sources:
                continue
            j = positions[node]
            refs: list[Ref] = []
            for i, text in enumerate(stage.sources[node]):
                ref, bare, message = parse_ref(text, positions)
                if bare is not None:
                    message = (
                        f"write the stage of `{bare}`: {bare}(0) for its input slice, {bare}(k) after stage k"
                    )
                if not message:
                    message = _source_problem(ref, text, s, j, done, this_stage, updated, graph.input, nodes)
                if not message and ref in refs:
                    message = f"`{text}` is listed twice"
                if not message and graph.weights != "per-update" and any(r[0] == ref[0] for r in refs):
                    first = next(r for r in refs if r[0] == ref[0])
                    message = (
                        f"with {graph.weights} weights (one W_ij per edge) an update reads each node once, "
                        f"but this one reads `{text}` beside {_text(first, nodes)}; use weights: per-update"
                    )
                if message:
                    problems.append(((*at, "sources", node, i), message))
                else:
                    refs.append(ref)
            updates.append((j, s, tuple(refs)))
            done.add(j)
        updated[s] = this_stage
    return tuple(updates), updated, problems


def _text(ref: Ref, nodes: tuple[tuple[str, int], ...]) -> str:
    return "`x0`" if ref == (0, 0) else f"`{nodes[ref[0] - 1][0]}({ref[1]})`"


def _source_problem(
    ref: Ref,
    text: str,
    stage: int,
    node: int,
    done: set[int],
    this_stage: set[int],
    updated: dict[int, set[int]],
    graph_input: str,
    nodes: tuple[tuple[str, int], ...],
) -> str:
    """Why the update of ``node`` in ``stage`` cannot read ``ref`` (empty when it can)."""
    j, k = ref
    if ref == (0, 0):
        return ""
    name = nodes[j - 1][0]
    if k == 0:
        if graph_input == "split":
            return ""
        return f"`{text}` is a slice of the input, but the input is whole (read x0, or set input: split)"
    if k > stage:
        return f"`{text}` is not computed yet: stage {k} comes after stage {stage}"
    if k == stage and j == node:
        return f"`{text}` is the value this update computes; its previous value is {name}({stage - 1})"
    if k == stage and j not in done:
        if j in this_stage:
            return f"`{text}` is not computed yet: stage {stage} updates {name} after {nodes[node - 1][0]}"
        return f"`{text}` does not exist: stage {stage} does not update {name}"
    if k < stage and j not in updated.get(k, set()):
        return f"`{text}` does not exist: stage {k} does not update {name}"
    return ""


def _output(
    graph: GraphSpec,
    positions: dict[str, int],
    updated: dict[int, set[int]],
    stages: int,
    loc: Loc,
) -> tuple[tuple[Ref, ...], list[tuple[Loc, str]]]:
    """The output's values; a bare name is the node's newest value after the last stage."""

    def final(j: int) -> Ref | None:
        for k in range(stages, 0, -1):
            if j in updated.get(k, set()):
                return (j, k)
        return (j, 0) if graph.input == "split" else None

    problems: list[tuple[Loc, str]] = []
    texts = graph.output.cat if graph.output.cat is not None else list(positions)
    refs: list[Ref] = []
    for i, text in enumerate(texts):
        where = (*loc, "cat", i) if graph.output.cat is not None else (*loc,)
        ref, bare, message = parse_ref(text, positions)
        if bare is not None:
            ref = final(positions[bare])
            if ref is None:
                message = f"`{bare}` is never updated and the input is whole: it has no value"
        elif ref is not None and ref != (0, 0):
            j, k = ref
            if k == 0 and graph.input != "split":
                message = f"`{text}` is a slice of the input, but input is whole"
            elif k > stages:
                message = f"`{text}`: the graph has {stages} stage{'s' if stages != 1 else ''}"
            elif k > 0 and j not in updated.get(k, set()):
                message = f"`{text}` does not exist: stage {k} does not update {text.split('(')[0].strip()}"
        if message:
            problems.append((where, message))
        else:
            refs.append(ref)
    if refs and all(ref == (0, 0) for ref in refs):
        problems.append(((*loc, "cat"), "the output reads only x0; a block's output needs a node's value"))
    return tuple(refs), problems
