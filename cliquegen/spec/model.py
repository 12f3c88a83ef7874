"""Spec format v1: the pydantic models a YAML spec is validated into.

Clique blocks inherit every unset option from ``defaults`` (the schedule field by field), so
``Spec.resolved_blocks()`` gives the complete configuration of each block; a block
``{graph: name}`` is a graph of the spec's ``graphs:`` (:mod:`.graph`), which says everything
about it: ``defaults`` do not apply to it.  Checks that
involve several values (``partial`` against ``layers``, a ``feature`` naming a stage that
is not computed, ...) raise :class:`SpecSemanticError`, whose locations name the YAML node
that holds the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag, model_validator

from .base import NAME_PATTERN, BottleneckWidth, Kernel, Loc, PositiveInt, SpecBase, StrictModel
from .graph import GraphName, GraphSpec, ResolvedGraph, block_fit, resolve_graph

#: ``x0``, a stage (1, 2, ...) or ``last``: the block's last stage, whatever ``stages`` is.
StageRef = Literal["x0", "last"] | Annotated[int, Field(ge=1, le=64)]
StageIndex = Annotated[int, Field(ge=1, le=64)]
#: ``transit: 2`` (a stage), ``transit: last``, or a list of them with X0: ``transit: [x0, 1]``.
Transit = StageIndex | Literal["last"] | Annotated[list[StageRef], Field(min_length=1)]
#: Inputs larger than this (height or width) need a written ``stem.kind``: the built-in CIFAR stem
#: keeps the full resolution, which is rarely what a large image wants.
SMALL_INPUT = 64


class SpecSemanticError(Exception):
    """Contradictory values in an otherwise well-typed spec: a list of (location, message)."""

    def __init__(self, problems: list[tuple[Loc, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


class InputSpec(StrictModel):
    """Image size the network is built for (FLOPs are counted at this size)."""

    channels: PositiveInt = Field(3, description="image channels: 3 for RGB, 1 for grey")
    height: PositiveInt = Field(32, description="image height in pixels")
    width: PositiveInt = Field(32, description="image width in pixels")


class StemSpec(StrictModel):
    """``cifar``: one 3x3 conv to ``channels``; ``imagenet``: 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""

    kind: Literal["cifar", "imagenet"] = Field(
        "cifar",
        description="cifar: one 3x3 conv; imagenet: 7x7/2 conv, 3x3/2 max pool (1/4 size)",
    )
    channels: PositiveInt = Field(64, description="channels of the stem's output, X0 of the first block")


class ScheduleSpec(StrictModel):
    """How the layers of a block are updated."""

    stages: Annotated[int, Field(ge=1, le=64)] = Field(
        2,
        description="1 = Stage I only; 2 = I + II; 3 ... more; unwritten: the highest stage that "
        "feature and transit name by number, else 2",
    )
    partial: Annotated[int, Field(ge=0)] | None = Field(
        None, description="CliqueNet-X: only the first X updates of the last stage"
    )
    order: list[PositiveInt] | None = Field(
        None, description="update order of the layers, e.g. [3, 1, 2, 4]; null = ascending"
    )


class ScheduleOverride(StrictModel):
    """A block's schedule: each unset field comes from ``defaults.schedule``."""

    stages: Annotated[int, Field(ge=1, le=64)] | None = None
    partial: Annotated[int, Field(ge=0)] | None = None
    order: list[PositiveInt] | None = None


class Defaults(StrictModel):
    """Options inherited by every block unless the block sets them."""

    kernel: Kernel = Field(3, description="kernel of the W_ij (1 when bottleneck)")
    bottleneck: bool = Field(
        False, description="true: 1x1 W_ij, then the layer's own 3x3 conv to its channels"
    )
    bottleneck_width: BottleneckWidth = Field(
        1, description="with bottleneck: the 1x1 W_ij produce width * channels (DenseNet: 4)"
    )
    share_weights: bool = Field(
        True,
        description="true: all stages share each W_ij (and bottleneck conv); false: one per stage (w1_2_s2)",
    )
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0, description="dropout after each update's conv (the authors' CIFAR nets: 0.2)"
    )
    schedule: ScheduleSpec = Field(ScheduleSpec(), description="how the layers of a block are updated")
    feature: list[StageRef] = Field(
        ["x0", "last"],
        min_length=1,
        description="what the head reads of a block: x0 and stages (last: the block's last stage)",
    )
    transit: Transit = Field(
        "last",
        description="what the next block gets: a stage (last: the last one) or a list of x0 and stages "
        "(DenseNet: [x0, 1])",
    )


class BlockSpec(StrictModel):
    """One clique block: ``layers`` layers of ``channels`` filters each."""

    layers: PositiveInt = Field(description="layers in the block")
    channels: PositiveInt = Field(description="channels of each layer (the paper's k)")
    kernel: Kernel | None = None
    bottleneck: bool | None = None
    bottleneck_width: BottleneckWidth | None = None
    share_weights: bool | None = None
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    schedule: ScheduleOverride | None = None
    feature: list[StageRef] | None = Field(None, min_length=1)
    transit: Transit | None = None


class GraphBlockSpec(StrictModel):
    """A block that is a graph of the spec's ``graphs:``: it reads the previous transition's
    (or the stem's) output as X0, and the graph's ``output`` is what the next transition and
    the head read.  ``defaults`` do not apply to it: its graph says everything."""

    graph: GraphName = Field(description="a graph of `graphs:`")


#: The union members' tags, as pydantic names them in an error's location.
CLIQUE_BLOCK, GRAPH_BLOCK = "clique block", "graph block"


def _block_kind(value: object) -> str:
    """A block with a ``graph`` key is a graph block; anything else a clique block."""
    if isinstance(value, dict):
        return GRAPH_BLOCK if "graph" in value else CLIQUE_BLOCK
    return GRAPH_BLOCK if isinstance(value, GraphBlockSpec) else CLIQUE_BLOCK


#: One entry of ``blocks:``: ``{layers, channels, ...}`` (a clique) or ``{graph: name}``.
BlockEntry = Annotated[
    Annotated[BlockSpec, Tag(CLIQUE_BLOCK)] | Annotated[GraphBlockSpec, Tag(GRAPH_BLOCK)],
    Discriminator(_block_kind),
]


class TransitionSpec(StrictModel):
    """BN -> ReLU -> 1x1 conv (C -> floor(compression * C)) -> [squeeze-and-excitation] -> 2x2 avg pool."""

    attention: bool = Field(
        False, description="squeeze-and-excitation on the transition's output (CliqueNet-A)"
    )
    compression: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="the 1x1 conv keeps floor(compression * C) channels (DenseNet-BC: 0.5)"
    )


class HeadSpec(StrictModel):
    """``multiscale``: every block feature is [compressed,] BN-ReLU-pooled, then concatenated;
    ``last``: BN, ReLU, global average pool over the last block's feature only (DenseNet)."""

    kind: Literal["multiscale", "last"] = Field(
        "multiscale", description="multiscale: every block's feature; last: the last block's only (DenseNet)"
    )
    compression: bool = Field(False, description="multiscale: halve each block feature by a 1x1 conv first")


def compressed(channels: int, ratio: float) -> int:
    """floor(ratio * channels) with the ratio as written (0.29 is 29/100, not 0.28999...)."""
    return int(Fraction(str(ratio)) * channels)


@dataclass(frozen=True)
class BlockConfig:
    """A block with every option resolved; ``source`` maps each option to where it was set."""

    index: int
    layers: int
    channels: int
    kernel: int
    bottleneck: bool
    bottleneck_width: int
    share_weights: bool
    dropout: float
    stages: int
    partial: int | None
    order: tuple[int, ...]
    feature: tuple[str | int, ...]
    transit: tuple[str | int, ...]
    source: dict[str, Loc]

    @property
    def conv_kernel(self) -> int:
        """Kernel of the W_ij: 1x1 in a bottleneck block."""
        return 1 if self.bottleneck else self.kernel

    @property
    def conv_channels(self) -> int:
        """Output channels of the W_ij: bottleneck_width * k in a bottleneck block, else k."""
        return self.bottleneck_width * self.channels if self.bottleneck else self.channels

    def ref_channels(self, refs: tuple[str | int, ...], input_channels: int) -> int:
        """Channels of the concatenation ``refs`` names (a feature or transit)."""
        return sum(input_channels if ref == "x0" else self.layers * self.channels for ref in refs)


@dataclass(frozen=True)
class GraphUse:
    """A graph block resolved: its position and its checked graph."""

    index: int
    graph: ResolvedGraph

    def output_channels(self, input_channels: int) -> int:
        """Channels of what the block hands on (to its transition and the head)."""
        return self.graph.output_width(input_channels)


class NormSpec(StrictModel):
    """Every BatchNorm's epsilon and momentum, in PyTorch's meaning: momentum is the weight of
    each batch in the running statistics (TensorFlow's moving-average decay d is 1 - d)."""

    eps: Annotated[float, Field(gt=0, le=1)] = Field(1e-5, description="added to the variance")
    momentum: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1, description="weight of each batch in the running statistics (TensorFlow: 1 - decay)"
    )


#: Conv weight (W_ij, stem, bottleneck, transition) initialisations.  ``kaiming-normal-fan-out``:
#: PyTorch's He normal over the fan-out; ``truncated-normal-fan-in``: TensorFlow's
#: ``variance_scaling_initializer()`` (normal with std sqrt(1.3 * 2 / fan_in), cut at 2 std);
#: ``kaiming-uniform``: what ``nn.Conv2d`` draws, uniform in +-1 / sqrt(fan_in) (EDSR and most
#: super-resolution code keep it: outputs start small instead of growing with depth).
ConvInit = Literal["kaiming-normal-fan-out", "truncated-normal-fan-in", "kaiming-uniform"]
#: Linear weight (attention, classifier) initialisations: PyTorch's default or Glorot uniform.
LinearInit = Literal["kaiming-uniform", "glorot-uniform"]


class InitSpec(StrictModel):
    """How weights start; biases start at zero either way."""

    conv: ConvInit = Field(
        "kaiming-normal-fan-out",
        description="convs: kaiming-normal-fan-out (PyTorch), truncated-normal-fan-in (TF) or "
        "kaiming-uniform (nn.Conv2d's default)",
    )
    linear: LinearInit = Field(
        "kaiming-uniform", description="linears: kaiming-uniform (PyTorch) or glorot-uniform (TF)"
    )


class Spec(SpecBase):
    """A whole clique network."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100)] = Field(
        description="lower-case letters, digits and '-'; the module is named with _ for -"
    )
    description: Annotated[str, StringConstraints(max_length=10_000)] = Field("", description="free text")
    input: InputSpec = Field(InputSpec(), description="the image size the network is built for")
    num_classes: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        description="classes of the classifier; 0: none, the model returns the pooled features"
    )
    stem: StemSpec = Field(StemSpec(), description="what turns the image into the first block's X0")
    defaults: Defaults = Field(Defaults(), description="options of every block that does not set its own")
    graphs: dict[GraphName, GraphSpec] = Field(
        default_factory=dict, description="explicit graphs that blocks name with `graph:`"
    )
    blocks: list[BlockEntry] = Field(
        min_length=1,
        max_length=64,
        description="one entry per block; each may set any key of defaults, or be {graph: name}",
    )
    transition: TransitionSpec = Field(
        TransitionSpec(), description="between blocks: BN, ReLU, 1x1 conv, [attention], 2x2 average pool"
    )
    head: HeadSpec = Field(HeadSpec(), description="what pools the block features for the classifier")
    norm: NormSpec = Field(NormSpec(), description="every BatchNorm's epsilon and momentum")
    init: InitSpec = Field(InitSpec(), description="how weights start (biases start at zero)")
    memory_efficient: bool = Field(
        False,
        description="training recomputes each update in the backward pass: less memory, more time",
    )

    @property
    def module_name(self) -> str:
        """File and module name of the generated code: the spec name with - replaced by _."""
        return self.name.replace("-", "_")

    def resolved_graphs(self) -> dict[str, ResolvedGraph]:
        """Every graph, checked (the spec validated, so none has a problem)."""
        graphs, problems = _resolved_graphs(self)
        if problems:
            raise SpecSemanticError(problems)
        return graphs

    def resolved_blocks(self) -> list[BlockConfig | GraphUse]:
        """Each block resolved: a clique's :class:`BlockConfig`, a graph block's :class:`GraphUse`."""
        graphs = self.resolved_graphs() if self.graphs else {}
        return [
            GraphUse(b, graphs[block.graph]) if isinstance(block, GraphBlockSpec) else _resolve(self, b)
            for b, block in enumerate(self.blocks)
        ]

    def block_input_channels(self) -> list[int]:
        """Channels of each block's X0: the stem's output, then each transition's output
        (floor(compression * C) of the C channels the previous block hands on)."""
        channels = [self.stem.channels]
        for block in self.resolved_blocks()[:-1]:
            channels.append(compressed(handed_on(block, channels[-1]), self.transition.compression))
        return channels

    @model_validator(mode="after")
    def _check_semantics(self) -> Spec:
        graphs, problems = _resolved_graphs(self)
        problems += _graph_block_problems(self, graphs)
        if problems:  # the blocks' channels need sound graphs
            raise SpecSemanticError(problems)
        blocks = self.resolved_blocks()
        for block in blocks:
            if isinstance(block, BlockConfig):
                problems += _block_problems(block, self, last=block.index == len(blocks) - 1)
        problems += _head_problems(self)
        problems += _stem_problems(self)
        if not problems:  # channel counts need consistent blocks
            problems += _compression_problems(self, blocks)
            if not problems:
                problems += _fit_problems(self, blocks)
        problems += _size_problems(self)
        if problems:
            raise SpecSemanticError(problems)
        return self


def handed_on(block: BlockConfig | GraphUse, input_channels: int) -> int:
    """Channels a block hands on to its transition: a clique's transit, a graph's output."""
    if isinstance(block, GraphUse):
        return block.output_channels(input_channels)
    return block.ref_channels(block.transit, input_channels)


def _resolved_graphs(spec: Spec) -> tuple[dict[str, ResolvedGraph], list[tuple[Loc, str]]]:
    """The graphs that resolve, and the problems of those that do not."""
    graphs: dict[str, ResolvedGraph] = {}
    problems: list[tuple[Loc, str]] = []
    for name, graph in spec.graphs.items():
        resolved, found = resolve_graph(name, graph, ("graphs", name))
        problems += found
        if resolved is not None:
            graphs[name] = resolved
    return graphs, problems


def _graph_block_problems(spec: Spec, graphs: dict[str, ResolvedGraph]) -> list[tuple[Loc, str]]:
    """A graph block names a graph of the spec with pre-activation units."""
    problems: list[tuple[Loc, str]] = []
    for b, block in enumerate(spec.blocks):
        if not isinstance(block, GraphBlockSpec):
            continue
        if block.graph not in spec.graphs:
            known = ", ".join(f"`{name}`" for name in spec.graphs) or "none"
            message = f"unknown graph `{block.graph}` (the spec's graphs: {known})"
            problems.append((("blocks", b, "graph"), message))
        elif block.graph in graphs and graphs[block.graph].unit.kind != "pre":
            problems.append(
                (
                    ("graphs", block.graph, "unit", "kind"),
                    f"block {b + 1} of a classification network uses graph `{block.graph}`, whose units "
                    "are post-activation; its blocks use BN -> ReLU -> conv units (kind: pre)",
                )
            )
    return problems


def _fit_problems(spec: Spec, blocks: list[BlockConfig | GraphUse]) -> list[tuple[Loc, str]]:
    """Each graph block can read the X0 it gets (a split's widths, a residual's)."""
    problems: list[tuple[Loc, str]] = []
    for block, c0 in zip(blocks, spec.block_input_channels(), strict=True):
        if isinstance(block, GraphUse):
            message = block_fit(block.graph, c0)
            if message:
                problems.append((("blocks", block.index, "graph"), message))
    return problems


def _resolve(spec: Spec, b: int) -> BlockConfig:
    block, defaults = spec.blocks[b], spec.defaults
    source: dict[str, Loc] = {}
    values = {}
    # where a value came from: the block, an explicit default, or (built-in default) the block
    written_defaults = defaults.model_fields_set if "defaults" in spec.model_fields_set else set()
    written_schedule = defaults.schedule.model_fields_set if "schedule" in written_defaults else set()
    for key in ("kernel", "bottleneck", "bottleneck_width", "share_weights", "dropout", "feature", "transit"):
        own = getattr(block, key)
        values[key] = getattr(defaults, key) if own is None else own
        if own is None:
            source[key] = ("defaults", key) if key in written_defaults else ("blocks", b)
        else:
            source[key] = ("blocks", b, key)
    for key in ("stages", "partial", "order"):
        own = None if block.schedule is None else getattr(block.schedule, key)
        values[key] = getattr(defaults.schedule, key) if own is None else own
        if own is None and key in written_schedule:
            source[key] = ("defaults", "schedule", key)
        else:
            source[key] = ("blocks", b, "schedule", key) if block.schedule is not None else ("blocks", b)
    if "stages" not in written_schedule and (block.schedule is None or block.schedule.stages is None):
        # not written: as many stages as feature and transit read
        _derive_stages(spec, b, values, source)
    order = values.pop("order")
    transit = values.pop("transit")
    stages = values["stages"]
    return BlockConfig(
        index=b,
        layers=block.layers,
        channels=block.channels,
        order=tuple(order) if order is not None else tuple(range(1, block.layers + 1)),
        feature=_stage_refs(values.pop("feature"), stages),
        transit=_stage_refs(transit, stages),
        source=source,
        **values,
    )


def _derive_stages(spec: Spec, b: int, values: dict, source: dict[str, Loc]) -> None:
    """An unwritten ``stages``: the highest stage that the block's feature (when the head reads
    it) and transit (unless it is the last block) name by number; 2 when they name none.  The
    stage count is then located at the reference that asks for it."""
    last = b == len(spec.blocks) - 1
    readers = ["transit"] if not last else []
    if last or spec.head.kind == "multiscale":
        readers.append("feature")
    named = [
        (ref, key)
        for key in readers
        for ref in (values[key] if isinstance(values[key], list) else [values[key]])
        if isinstance(ref, int)
    ]
    if named:
        values["stages"], key = max(named, key=lambda pair: pair[0])
        source["stages"] = source[key]


def _stage_refs(written: int | str | list[int | str], stages: int) -> tuple[str | int, ...]:
    """A written feature or transit as X0 and stage numbers, ``last`` replaced by ``stages``."""
    refs = written if isinstance(written, list) else [written]
    return tuple(stages if ref == "last" else ref for ref in refs)


def _stages_of(block: BlockConfig) -> str:
    count = "only 1 stage is" if block.stages == 1 else f"only {block.stages} stages are"
    return f"{count} computed{{in_block}}"


def _yaml(value: object) -> str:
    """A value as a spec writes it: ``[x0, last]``, ``2``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_yaml, value)) + "]"
    return "true" if value is True else "false" if value is False else str(value)


def _block_problems(block: BlockConfig, spec: Spec, last: bool) -> list[tuple[Loc, str]]:
    """What contradicts itself in a block; each message ends with the line to write instead."""
    n, problems = block.layers, []
    at = f"block {block.index + 1} has {n} layer{'s' if n != 1 else ''}"
    head_reads_feature = last or spec.head.kind == "multiscale"
    own = spec.blocks[block.index]
    written = {  # feature and transit as written (or inherited), `last` kept
        key: getattr(spec.defaults, key) if getattr(own, key) is None else getattr(own, key)
        for key in ("feature", "transit")
    }
    transit_listed = isinstance(written["transit"], list)

    def line(key: str, value: object, near: str) -> str:
        """``key: value`` as written beside the problem with ``near``: a schedule key goes
        inside a `schedule:` mapping unless one is there already."""
        text = f"{key}: {_yaml(value)}"
        if key in ("stages", "partial", "order"):
            at, source = block.source[near], block.source[key]
            scope = at[:1] if at[0] == "defaults" else at[:2]
            if source[: len(scope) + 1] != (*scope, "schedule"):
                text = f"schedule: {{{text}}}"
        return f"`{text}`"

    def problem(key: str, message: str, index: int | None = None, fix: str = "") -> None:
        loc = block.source[key]
        # a problem in `defaults` reads the same for every block it affects, so it is reported once
        message = message.format(in_block="" if loc[0] == "defaults" else f" in block {block.index + 1}")
        if loc == ("blocks", block.index):  # not written anywhere: the built-in default applies
            value = written[key] if key in written else getattr(block, key)
            message += f" (the built-in default `{key}: {_yaml(value)}` applies)"
        elif index is not None:
            loc += (index,)
        problems.append((loc, message + (f"; {fix}" if fix else "")))

    def with_last(key: str, too_high: object) -> object:
        """The written feature or transit with the stages in ``too_high`` replaced by `last`."""
        value = written[key]
        if not isinstance(value, list):
            return "last"
        fixed = [("last" if ref in too_high else ref) for ref in value]
        return list(dict.fromkeys(fixed))

    if block.stages >= 2 and n < 2:
        problem(
            "stages",
            f"stage II needs at least 2 layers, but {at}",
            fix=f"write {line('stages', 1, 'stages')}",
        )
    if block.partial is not None and block.stages < 2:
        problem(
            "partial",
            "partial applies to Stage II and later; with stages: 1 every layer is needed",
            fix=f"remove `partial: {block.partial}`, or write {line('stages', 2, 'partial')}",
        )
    elif block.partial is not None and block.partial > n:
        problem(
            "partial",
            f"partial: {block.partial} exceeds the layer count ({at})",
            fix=f"write {line('partial', n, 'partial')} or less",
        )
    if sorted(block.order) != list(range(1, n + 1)):
        problem("order", f"order must be a permutation of 1..{n} ({at}), got {list(block.order)}")
    if block.bottleneck_width != 1 and not block.bottleneck:
        problem(
            "bottleneck_width",
            f"bottleneck_width: {block.bottleneck_width} needs bottleneck: true{{in_block}} "
            "(without a bottleneck the W_ij produce the layer's channels)",
        )
    for key in ("feature", "transit"):
        refs = getattr(block, key)
        if (key == "feature" and not head_reads_feature) or (key == "transit" and last):
            continue  # the last block transits nothing
        too_high = [ref for ref in refs if ref != "x0" and ref > block.stages]
        for i, ref in enumerate(refs):
            if ref in too_high:
                index = i if key == "feature" or transit_listed else None
                more = line("stages", max(too_high), key)
                fix = f"write `{key}: {_yaml(with_last(key, too_high))}`, or {more}"
                problem(key, f"{key} names stage {ref}, but {_stages_of(block)}", index=index, fix=fix)
        if len(set(refs)) != len(refs):
            kept = [written[key][i] for i in range(len(refs)) if refs[i] not in refs[:i]]
            same = f" (`last` is stage {block.stages})" if "last" in written[key] else ""
            problem(key, f"{key} lists the same entry twice{same}", fix=f"write `{key}: {_yaml(kept)}`")
    if not head_reads_feature and block.source["feature"] == ("blocks", block.index, "feature"):
        problem(
            "feature",
            f"head kind `last` reads only the last block's feature; block {block.index + 1}'s is unused",
            fix="remove it",
        )
    used = [ref for ref in block.feature if ref != "x0"] if head_reads_feature else []
    used += [] if last else [ref for ref in block.transit if ref != "x0"]
    if not problems and max(used, default=0) < block.stages:
        if last:
            users, readers = "`feature` does not use it (the last block has no transition)", ["feature"]
        elif not head_reads_feature:
            users = "`transit` does not use it (head kind `last` reads only the last block's feature)"
            readers = ["transit"]
        else:
            users, readers = "neither `feature` nor `transit` uses it", ["transit", "feature"]
        highest = max(used, default=0)
        fixes = [line("stages", max(highest, 1), "stages")]
        for key in readers:
            value = written[key]
            if isinstance(value, list):
                stages = [ref for ref in getattr(block, key) if ref != "x0"]
                fixed = with_last(key, [max(stages)]) if stages else [*value, "last"]
            else:
                fixed = "last"
            fixes.append(f"`{key}: {_yaml(fixed)}`")
        problem(
            "stages",
            f"stage {block.stages} of block {block.index + 1} is computed but {users}",
            fix="write " + ", or ".join(fixes),
        )
    return problems


def _head_problems(spec: Spec) -> list[tuple[Loc, str]]:
    if spec.head.kind == "last" and spec.head.compression:
        return [
            (
                ("head", "compression"),
                "compression halves each block feature of the multi-scale head; "
                "head kind `last` has none (use kind: multiscale, or drop compression)",
            )
        ]
    return []


def _stem_problems(spec: Spec) -> list[tuple[Loc, str]]:
    """A large input must say which stem it wants: the built-in one keeps the full resolution."""
    height, width = spec.input.height, spec.input.width
    stem_written = "stem" in spec.model_fields_set
    if max(height, width) <= SMALL_INPUT or (stem_written and "kind" in spec.stem.model_fields_set):
        return []
    channels = spec.stem.channels
    imagenet = f"{{kind: imagenet, channels: {channels}}}"
    cifar = f"{{kind: cifar, channels: {channels}}}"
    return [
        (
            ("stem",) if stem_written else ("input",),
            f"a {height}x{width} input needs a stem kind: the built-in `cifar` stem (one 3x3 conv) "
            f"keeps all {height}x{width} positions in the first block; write `stem: {imagenet}` "
            f"(7x7/2 conv and 3x3/2 max pool: the first block sees {height // 4}x{width // 4}), "
            f"or `stem: {cifar}` to keep the full size",
        )
    ]


def _compression_problems(spec: Spec, blocks: list[BlockConfig]) -> list[tuple[Loc, str]]:
    """Every transition keeps at least one channel."""
    c0, ratio = spec.stem.channels, spec.transition.compression
    for block in blocks[:-1]:
        transit = handed_on(block, c0)
        c0 = compressed(transit, ratio)
        if c0 < 1:
            return [
                (
                    ("transition", "compression"),
                    f"compression: {ratio} keeps no channel of the {transit} that block "
                    f"{block.index + 1} transits (floor({ratio} * {transit}) = 0)",
                )
            ]
    return []


def _size_problems(spec: Spec) -> list[tuple[Loc, str]]:
    """Spatial size must survive the stem and every transition's 2x2 pooling.  The ImageNet
    stem (7x7/2 conv, 3x3/2 max pool, both padded) gives ceil(side / 4), at least 1; each
    transition's pooling floor(side / 2), which must stay at least 1."""
    height, width = spec.input.height, spec.input.width
    stem = ""
    if spec.stem.kind == "imagenet":
        height, width = (height + 3) // 4, (width + 3) // 4
        stem = f" ({height}x{width} after the ImageNet stem)"
    transitions = len(spec.blocks) - 1
    if min(height, width) < 2**transitions:
        return [
            (
                ("input",),
                f"input of {spec.input.height}x{spec.input.width}{stem} is too small for "
                f"{len(spec.blocks)} blocks: their {transitions} transitions each halve it",
            )
        ]
    return []
