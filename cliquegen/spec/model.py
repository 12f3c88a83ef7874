"""Spec format v1: the pydantic models a YAML spec is validated into.

Blocks inherit every unset option from ``defaults`` (the schedule field by field), so
``Spec.resolved_blocks()`` gives the complete configuration of each block.  Checks that
involve several values (``partial`` against ``layers``, a ``feature`` naming a stage that
is not computed, ...) raise :class:`SpecSemanticError`, whose locations name the YAML node
that holds the offending value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

Loc = tuple[str | int, ...]

#: Lower-case words joined by ``-``, not ending in one: ``class-`` would build ``class_.py``,
#: the module of the spec ``class`` (a Python keyword).
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$"
PositiveInt = Annotated[int, Field(ge=1, le=100_000)]


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):  # Literal[1, ...] would take True == 1
        raise ValueError("expected a kernel size (1, 3, 5 or 7), got a boolean")
    return value


Kernel = Annotated[Literal[1, 3, 5, 7], BeforeValidator(_not_a_bool)]
StageRef = Literal["x0"] | Annotated[int, Field(ge=1, le=64)]
StageIndex = Annotated[int, Field(ge=1, le=64)]
#: ``transit: 2`` (a stage) or a list of them with X0: ``transit: [x0, 1]``.
Transit = StageIndex | Annotated[list[StageRef], Field(min_length=1)]
BottleneckWidth = Annotated[int, Field(ge=1, le=64)]


class SpecSemanticError(Exception):
    """Contradictory values in an otherwise well-typed spec: a list of (location, message)."""

    def __init__(self, problems: list[tuple[Loc, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputSpec(_Model):
    """Image size the network is built for (FLOPs are counted at this size)."""

    channels: PositiveInt = 3
    height: PositiveInt = 32
    width: PositiveInt = 32


class StemSpec(_Model):
    """``cifar``: one 3x3 conv to ``channels``; ``imagenet``: 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""

    kind: Literal["cifar", "imagenet"] = "cifar"
    channels: PositiveInt = 64


class ScheduleSpec(_Model):
    """How the layers of a block are updated."""

    stages: Annotated[int, Field(ge=1, le=64)] = Field(
        2, description="1 = Stage I only; 2 = I + II; 3, 4 ... = more alternate stages"
    )
    partial: Annotated[int, Field(ge=0)] | None = Field(
        None, description="CliqueNet-X: only the first X updates of the last stage"
    )
    order: list[PositiveInt] | None = Field(
        None, description="update order of the layers, e.g. [3, 1, 2, 4]; null = ascending"
    )


class ScheduleOverride(_Model):
    """A block's schedule: each unset field comes from ``defaults.schedule``."""

    stages: Annotated[int, Field(ge=1, le=64)] | None = None
    partial: Annotated[int, Field(ge=0)] | None = None
    order: list[PositiveInt] | None = None


class Defaults(_Model):
    """Options inherited by every block unless the block sets them."""

    kernel: Kernel = Field(3, description="kernel of the W_ij (1 when bottleneck)")
    bottleneck: bool = False
    bottleneck_width: BottleneckWidth = Field(
        1, description="with bottleneck: the 1x1 W_ij produce width * channels (DenseNet: 4); default 1"
    )
    share_weights: bool = Field(
        True,
        description="true: every stage uses the same W_ij (and bottleneck conv); "
        "false: each stage has its own (names end in the stage: w1_2_s2)",
    )
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    schedule: ScheduleSpec = ScheduleSpec()
    feature: list[StageRef] = Field(
        ["x0", 2], min_length=1, description="block feature: X0 and/or the newest values after a stage"
    )
    transit: Transit = Field(
        2,
        description="what the next block receives: a stage, or a list of X0 and stages "
        "(DenseNet: [x0, 1], the whole concatenation)",
    )


class BlockSpec(_Model):
    """One clique block: ``layers`` layers of ``channels`` filters each."""

    layers: PositiveInt
    channels: PositiveInt
    kernel: Kernel | None = None
    bottleneck: bool | None = None
    bottleneck_width: BottleneckWidth | None = None
    share_weights: bool | None = None
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    schedule: ScheduleOverride | None = None
    feature: list[StageRef] | None = Field(None, min_length=1)
    transit: Transit | None = None


class TransitionSpec(_Model):
    """BN -> ReLU -> 1x1 conv (C -> floor(compression * C)) -> [squeeze-and-excitation] -> 2x2 avg pool."""

    attention: bool = False
    compression: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="the 1x1 conv keeps floor(compression * C) of the C channels (DenseNet-BC: 0.5)"
    )


class HeadSpec(_Model):
    """``multiscale``: every block feature is [compressed,] BN-ReLU-pooled, then concatenated;
    ``last``: BN, ReLU, global average pool over the last block's feature only (DenseNet)."""

    kind: Literal["multiscale", "last"] = "multiscale"
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


class NormSpec(_Model):
    """Every BatchNorm's epsilon and momentum, in PyTorch's meaning: momentum is the weight of
    each batch in the running statistics (TensorFlow's moving-average decay d is 1 - d)."""

    eps: Annotated[float, Field(gt=0, le=1)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


#: Conv weight (W_ij, stem, bottleneck, transition) initialisations.  ``kaiming-normal-fan-out``:
#: PyTorch's He normal over the fan-out; ``truncated-normal-fan-in``: TensorFlow's
#: ``variance_scaling_initializer()`` (normal with std sqrt(1.3 * 2 / fan_in), cut at 2 std).
ConvInit = Literal["kaiming-normal-fan-out", "truncated-normal-fan-in"]
#: Linear weight (attention, classifier) initialisations: PyTorch's default or Glorot uniform.
LinearInit = Literal["kaiming-uniform", "glorot-uniform"]


class InitSpec(_Model):
    """How weights start; biases start at zero either way."""

    conv: ConvInit = "kaiming-normal-fan-out"
    linear: LinearInit = "kaiming-uniform"


@dataclass(frozen=True)
class Provenance:
    """Where a spec came from: the path as given (``<string>`` for text), the text itself, and
    the sha256 of its bytes (of the file exactly as ``sha256sum`` reads it).  ``hashed`` says
    what was hashed: ``file``, ``text``, or for a Spec built in Python its ``canonical JSON``."""

    path: str
    text: str
    sha256: str
    hashed: str = "file"

    @classmethod
    def of_text(cls, path: str, text: str, hashed: str = "file") -> Provenance:
        return cls(path, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), hashed)


class Spec(_Model):
    """A whole clique network."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100)]
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    input: InputSpec = InputSpec()
    num_classes: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        description="classes of the classifier; 0: no classifier, the model returns the pooled features"
    )
    stem: StemSpec = StemSpec()
    defaults: Defaults = Defaults()
    blocks: list[BlockSpec] = Field(min_length=1, max_length=64)
    transition: TransitionSpec = TransitionSpec()
    head: HeadSpec = HeadSpec()
    norm: NormSpec = NormSpec()
    init: InitSpec = InitSpec()
    memory_efficient: bool = Field(
        False,
        description="training recomputes each update's concat -> BN -> ReLU -> conv in the backward "
        "pass instead of storing it: less activation memory, some more time",
    )

    #: Top-level fields that :func:`~cliquegen.spec.shipped.apply_overrides` replaced, with
    #: the values the spec had, so that a message can name the override instead of the spec.
    _overridden: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def overridden(self) -> dict[str, Any]:
        """``{"num_classes": 10}`` when an override replaced the spec's ``num_classes: 10``."""
        return dict(self._overridden)

    _provenance: Provenance | None = PrivateAttr(default=None)

    @property
    def provenance(self) -> Provenance:
        """Where the spec came from, as the loader recorded it; a Spec made in Python (or by
        overrides) has its canonical JSON as its text."""
        if self._provenance is not None:
            return self._provenance
        text = self.model_dump_json(indent=2, exclude_unset=True) + "\n"
        return Provenance.of_text("<string>", text, "canonical JSON")

    def with_provenance(self, provenance: Provenance) -> Spec:
        """This spec, recording where it came from (the loader's one place to say so)."""
        spec = self.model_copy()
        spec._provenance = provenance
        return spec

    def __eq__(self, other: object) -> bool:
        """Specs are equal when they describe the same network, wherever they came from and
        however they were arrived at (provenance and overrides are not compared)."""
        if not isinstance(other, Spec):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = _Model.__hash__

    @property
    def module_name(self) -> str:
        """File and module name of the generated code: the spec name with - replaced by _."""
        return self.name.replace("-", "_")

    def resolved_blocks(self) -> list[BlockConfig]:
        return [_resolve(self, b) for b in range(len(self.blocks))]

    def block_input_channels(self) -> list[int]:
        """Channels of each block's X0: the stem's output, then each transition's output
        (floor(compression * C) of the C channels the previous block transits)."""
        channels = [self.stem.channels]
        for block in self.resolved_blocks()[:-1]:
            transit = block.ref_channels(block.transit, channels[-1])
            channels.append(compressed(transit, self.transition.compression))
        return channels

    @model_validator(mode="after")
    def _check_semantics(self) -> Spec:
        problems: list[tuple[Loc, str]] = []
        blocks = self.resolved_blocks()
        for block in blocks:
            problems += _block_problems(block, self, last=block.index == len(blocks) - 1)
        problems += _head_problems(self)
        if not problems:  # channel counts need consistent blocks
            problems += _compression_problems(self, blocks)
        problems += _size_problems(self)
        if problems:
            raise SpecSemanticError(problems)
        return self


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
    order = values.pop("order")
    transit = values.pop("transit")
    return BlockConfig(
        index=b,
        layers=block.layers,
        channels=block.channels,
        order=tuple(order) if order is not None else tuple(range(1, block.layers + 1)),
        feature=tuple(values.pop("feature")),
        transit=(transit,) if isinstance(transit, int) else tuple(transit),
        source=source,
        **values,
    )


def _stages_of(block: BlockConfig) -> str:
    count = "only 1 stage is" if block.stages == 1 else f"only {block.stages} stages are"
    return f"{count} computed{{in_block}}"


def _block_problems(block: BlockConfig, spec: Spec, last: bool) -> list[tuple[Loc, str]]:
    n, problems = block.layers, []
    at = f"block {block.index + 1} has {n} layer{'s' if n != 1 else ''}"
    head_reads_feature = last or spec.head.kind == "multiscale"
    written_transit = spec.blocks[block.index].transit
    transit_listed = isinstance(spec.defaults.transit if written_transit is None else written_transit, list)

    def problem(key: str, message: str, index: int | None = None) -> None:
        loc = block.source[key]
        # a problem in `defaults` reads the same for every block it affects, so it is reported once
        message = message.format(in_block="" if loc[0] == "defaults" else f" in block {block.index + 1}")
        if loc == ("blocks", block.index):  # not written anywhere: the built-in default applies
            value = getattr(block, key)
            if key == "transit" and not transit_listed:
                value = value[0]
            shown = f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else value
            message += f" (the built-in default `{key}: {shown}` applies)"
        elif index is not None:
            loc += (index,)
        problems.append((loc, message))

    if block.stages >= 2 and n < 2:
        problem("stages", f"stage II needs at least 2 layers, but {at}; use stages: 1")
    if block.partial is not None and block.stages < 2:
        problem("partial", "partial applies to Stage II and later; with stages: 1 every layer is needed")
    elif block.partial is not None and block.partial > n:
        problem("partial", f"partial: {block.partial} exceeds the layer count ({at})")
    if sorted(block.order) != list(range(1, n + 1)):
        problem("order", f"order must be a permutation of 1..{n} ({at}), got {list(block.order)}")
    if block.bottleneck_width != 1 and not block.bottleneck:
        problem(
            "bottleneck_width",
            f"bottleneck_width: {block.bottleneck_width} needs bottleneck: true{{in_block}} "
            "(without a bottleneck the W_ij produce the layer's channels)",
        )
    if head_reads_feature:
        for i, ref in enumerate(block.feature):
            if ref != "x0" and ref > block.stages:
                problem("feature", f"feature names stage {ref}, but {_stages_of(block)}", index=i)
        if len(set(block.feature)) != len(block.feature):
            problem("feature", "feature lists the same entry twice")
    elif block.source["feature"] == ("blocks", block.index, "feature"):
        problem(
            "feature",
            f"head kind `last` reads only the last block's feature; block {block.index + 1}'s is unused",
        )
    if not last:  # the last block transits nothing
        for i, ref in enumerate(block.transit):
            if ref != "x0" and ref > block.stages:
                index = i if transit_listed else None
                problem("transit", f"transit names stage {ref}, but {_stages_of(block)}", index=index)
        if len(set(block.transit)) != len(block.transit):
            problem("transit", "transit lists the same entry twice")
    used = [ref for ref in block.feature if ref != "x0"] if head_reads_feature else []
    used += [] if last else [ref for ref in block.transit if ref != "x0"]
    if not problems and max(used, default=0) < block.stages:
        users = "neither `feature` nor `transit`"
        if last:
            users = "`feature`"
        elif not head_reads_feature:
            users = "`transit` (head kind `last` reads only the last block's feature)"
        problem(
            "stages",
            f"stage {block.stages} of block {block.index + 1} is computed but {users} uses it"
            f"{' (the last block has no transition)' if last else ''}; "
            f"use stages: {max(used, default=1)} or refer to stage {block.stages}",
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


def _compression_problems(spec: Spec, blocks: list[BlockConfig]) -> list[tuple[Loc, str]]:
    """Every transition keeps at least one channel."""
    c0, ratio = spec.stem.channels, spec.transition.compression
    for block in blocks[:-1]:
        transit = block.ref_channels(block.transit, c0)
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
