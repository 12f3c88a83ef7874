"""Image-to-image networks: a spec with ``network:``, a list of ops applied in order.

::

    name: pdasr-clique
    input: {channels: 3, height: 144, width: 144}
    output: {kind: image, scale: 1}
    graphs: {subband-clique: {...}}          # explicit graph blocks (cliquegen.spec.graph)
    network:
      - {op: mean_shift, mean: [0.4488, 0.4371, 0.4040], scale: 255, sign: -1}
      - {op: dwt}
      - {op: conv, name: shallow, out: 32, save: f0}
      - {op: group, graph: subband-clique, blocks: 15, fuse: {name: fuse, out: 32, act: {leaky_relu: 0.01}}}
      - {op: add, skip: f0}
      - ...

Ops: ``conv`` (a convolution with "same" padding, a bias unless ``bias: false``, an optional
activation), ``group`` (``blocks`` blocks of a graph in sequence; with ``fuse``, the
concatenation of all their outputs through a conv and an activation), ``add`` (a value
``save``d earlier), ``mean_shift`` (x + sign * scale * mean, constants), ``dwt`` / ``idwt``
(the orthonormal Haar transform and its inverse, band-major LL, HL, LH, HH).  Every op may
``save`` its output under a name for a later ``add``; ``add`` also knows the network's
input as ``input``, and enlarges a smaller skip by bicubic with ``resize: bicubic``.

:meth:`ImageSpec._check` walks the network with the input's shape and reports, located, an
unknown graph or skip, a width that does not fit (a split, a residual add, a skip), an odd
size under a DWT, and an output that is not the ``output`` the spec promises.
"""

from __future__ import annotations

import keyword
import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from .base import SpecBase, StrictModel
from .graph import Activation, GraphName, GraphSpec, ResolvedGraph, block_fit, resolve_graph
from .model import (
    NAME_PATTERN,
    ConvInit,
    InitSpec,
    InputSpec,
    Kernel,
    Loc,
    NormSpec,
    PositiveInt,
    SpecSemanticError,
)

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=60)]

#: Names the generated code uses itself; no module or value of a network may take one.
RESERVED_NAMES = frozenset(
    {"x", "self", "torch", "nn", "block", "update", "partial", "checkpoint", "maps", "model", "weight"}
    | {"conv", "bias", "linear", "dropout", "constant", "haar_dwt", "haar_idwt", "shared_weight", "conv2d"}
    | {"init_conv_weight", "clique_update", "update_steps", "bn_relu", "bn_relu_conv", "can_fold"}
    | {"folded_bn_relu", "checkpointed_update", "byte_mask_dropout", "take_blocks", "forward", "features"}
    | {"call", "recomputed_update"}
)


class OutputSpec(StrictModel):
    """What the network returns: an image (B, channels, scale * H, scale * W)."""

    kind: Literal["image"] = "image"
    scale: Literal[1, 2, 4] = 1
    channels: PositiveInt | None = Field(None, description="default: the input's channels")


class _Op(StrictModel):
    save: Identifier | None = Field(None, description="a name for this op's output, for a later `add`")


class ConvOp(_Op):
    """A convolution with "same" padding (module ``name``), then an optional activation."""

    op: Literal["conv"]
    name: Identifier
    out: PositiveInt
    kernel: Kernel = 3
    bias: bool = True
    act: Activation | None = None


class FuseSpec(StrictModel):
    """The conv (module ``name``) that fuses a group's concatenated block outputs."""

    name: Identifier
    out: PositiveInt
    kernel: Kernel = 1
    bias: bool = True
    act: Activation | None = None


class GroupOp(_Op):
    """``blocks`` blocks of ``graph`` in sequence (each reads the one before); with ``fuse``
    the output is fuse(cat(every block's output)), else the last block's output."""

    op: Literal["group"]
    graph: GraphName
    blocks: Annotated[int, Field(ge=1, le=1000)] = 1
    fuse: FuseSpec | None = None


#: The name under which ``add`` finds the network's input without an op saving it.
INPUT_SKIP = "input"


class AddOp(_Op):
    """The value before plus the value ``save``d as ``skip`` (``input``: the network's input);
    with ``resize: bicubic`` the skip is first enlarged to the value's size by a whole factor,
    as MATLAB's bicubic ``imresize`` (global residual learning: the network adds detail to a
    bicubic enlargement of its input)."""

    op: Literal["add"]
    skip: Identifier = Field(description="a name an earlier op saves, or `input`")
    resize: Literal["bicubic"] | None = Field(
        None, description="enlarge the skip to the value's size first (a whole factor, 2 or more)"
    )


class MeanShiftOp(_Op):
    """x + sign * scale * mean per channel: a fixed input normalisation, constants not parameters."""

    op: Literal["mean_shift"]
    name: Identifier | None = Field(None, description="of its constant; default mean_shift1, mean_shift2 ...")
    mean: Annotated[list[Annotated[float, Field(ge=-1e6, le=1e6)]], Field(min_length=1, max_length=4096)]
    scale: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0
    sign: Literal[-1, 1]


class DwtOp(_Op):
    """Haar DWT: (B, C, H, W) -> (B, 4C, H/2, W/2), bands LL, HL, LH, HH (band-major); H and W even."""

    op: Literal["dwt"]


class IdwtOp(_Op):
    """Inverse Haar DWT: (B, 4C, h, w) -> (B, C, 2h, 2w)."""

    op: Literal["idwt"]


NetworkOp = Annotated[ConvOp | GroupOp | AddOp | MeanShiftOp | DwtOp | IdwtOp, Field(discriminator="op")]


class ImageInitSpec(InitSpec):
    """How an image network's weights start: convs as ``nn.Conv2d`` draws them (EDSR's and
    PDASR's code keep that), so a fresh network's output starts small; biases at zero."""

    conv: ConvInit = Field(
        "kaiming-uniform",
        description="convs: kaiming-uniform (nn.Conv2d's default), kaiming-normal-fan-out or "
        "truncated-normal-fan-in",
    )


class ImageSpec(SpecBase):
    """An image-to-image network: explicit graph blocks inside a list of ops."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=100)]
    description: Annotated[str, StringConstraints(max_length=10_000)] = ""
    input: InputSpec = InputSpec()
    output: OutputSpec = OutputSpec()
    graphs: dict[GraphName, GraphSpec] = Field(default_factory=dict)
    network: Annotated[list[NetworkOp], Field(min_length=1, max_length=10_000)]
    norm: NormSpec = NormSpec()
    init: ImageInitSpec = ImageInitSpec()
    memory_efficient: bool = Field(False, description="recompute pre-activation updates in the backward pass")

    @property
    def module_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def num_classes(self) -> int:
        """An image network has no classifier."""
        return 0

    def resolved_graphs(self) -> dict[str, ResolvedGraph]:
        """Every graph, checked (the spec validated, so none has a problem)."""
        resolved = {}
        for name, graph in self.graphs.items():
            result, problems = resolve_graph(name, graph, ("graphs", name))
            if problems or result is None:
                raise SpecSemanticError(problems)
            resolved[name] = result
        return resolved

    @model_validator(mode="after")
    def _check(self) -> ImageSpec:
        problems: list[tuple[Loc, str]] = []
        graphs: dict[str, ResolvedGraph] = {}
        for name, graph in self.graphs.items():
            resolved, found = resolve_graph(name, graph, ("graphs", name))
            problems += found
            if resolved is not None:
                graphs[name] = resolved
        if not problems:
            problems += network_problems(self, graphs)
        if problems:
            raise SpecSemanticError(problems)
        return self


def network_problems(spec: ImageSpec, graphs: dict[str, ResolvedGraph]) -> list[tuple[Loc, str]]:
    """Walk the network with the input's shape; what does not fit, located."""
    problems: list[tuple[Loc, str]] = []
    c, h, w = spec.input.channels, spec.input.height, spec.input.width
    saved: dict[str, tuple[int, int, int]] = {INPUT_SKIP: (c, h, w)}
    modules: dict[str, Loc] = {}
    blocks = 0

    def claim(name: str, loc: Loc, *derived: str, given: bool = True) -> None:
        """``name`` for a module and its value, and the values named after it (``conv_act``);
        a ``given`` name (the spec's, not a numbered default) must not be one of ours."""
        if given and (name in RESERVED_NAMES or keyword.iskeyword(name) or _is_generated_name(name)):
            problems.append((loc, f"`{name}` is a name the generated code uses itself; choose another"))
            return
        for value in (name, *derived):
            if value in modules:
                where = ".".join(map(str, modules[value]))
                problems.append(
                    (loc, f"`{name}` names the value `{value}`, which the op at {where} names too")
                )
                return
        for value in (name, *derived):
            modules[value] = loc

    shifts = 0
    for i, op in enumerate(spec.network):
        at: Loc = ("network", i)
        if op.op == "conv":
            claim(op.name, (*at, "name"), *([f"{op.name}_act"] if op.act else []))
            c = op.out
        elif op.op == "mean_shift":
            shifts += 1
            name = op.name or f"mean_shift{shifts}"
            claim(name, (*at, "name") if op.name else at, f"{name}_out", given=op.name is not None)
            if len(op.mean) != c:
                problems.append(((*at, "mean"), f"mean has {len(op.mean)} values for {c} channels"))
        elif op.op == "dwt":
            if h % 2 or w % 2:
                problems.append(
                    (at, f"the Haar DWT needs an even height and width, but its input is {h}x{w}")
                )
                return problems
            c, h, w = 4 * c, h // 2, w // 2
        elif op.op == "idwt":
            if c % 4:
                problems.append(
                    (
                        at,
                        f"the inverse DWT reads 4 bands, but its input has {c} channels "
                        "(not a multiple of 4)",
                    )
                )
                return problems
            c, h, w = c // 4, 2 * h, 2 * w
        elif op.op == "add":
            if op.skip not in saved:
                known = ", ".join(f"`{name}`" for name in saved if name != INPUT_SKIP) or "none"
                problems.append(
                    (
                        (*at, "skip"),
                        f"no earlier op saves `{op.skip}` (saved so far: {known}; `{INPUT_SKIP}` is the "
                        "network's input)",
                    )
                )
                return problems
            message = skip_misfit(op, saved[op.skip], (c, h, w))
            if message:
                problems.append(((*at, "resize" if op.resize else "skip"), message))
                return problems
        elif op.op == "group":
            graph = graphs.get(op.graph)
            if graph is None:
                known = ", ".join(f"`{name}`" for name in graphs) or "none"
                problems.append(((*at, "graph"), f"unknown graph `{op.graph}` (the spec's graphs: {known})"))
                return problems
            for _ in range(op.blocks):
                blocks += 1
                message = block_fit(graph, c)
                if message:
                    problems.append(((*at, "graph"), message))
                    return problems
                c = graph.output_width(c)
            if op.fuse is not None:
                fuse = op.fuse
                derived = ([f"{fuse.name}_in"] if op.blocks > 1 else []) + (
                    [f"{fuse.name}_act"] if fuse.act else []
                )
                claim(fuse.name, (*at, "fuse", "name"), *derived)
                c = op.fuse.out
        if op.save is not None:
            if op.save == INPUT_SKIP:
                problems.append(
                    ((*at, "save"), f"`{INPUT_SKIP}` names the network's input; choose another name")
                )
                continue
            if op.save in saved:
                problems.append(((*at, "save"), f"`{op.save}` is saved twice"))
            saved[op.save] = (c, h, w)
    out = spec.output
    want = (out.channels or spec.input.channels, out.scale * spec.input.height, out.scale * spec.input.width)
    if (c, h, w) != want:
        problems.append(
            (
                ("output", "scale"),
                f"the network gives {_shape((c, h, w))} from a {spec.input.height}x{spec.input.width} input, "
                f"not the {_shape(want)} of output scale {out.scale}",
            )
        )
    return problems


def skip_misfit(op: AddOp, skip: tuple[int, int, int], value: tuple[int, int, int]) -> str:
    """Why ``op`` cannot add a skip of shape ``skip`` to ``value`` (empty when it can)."""
    factor = value[1] // skip[1]  # resize: the same whole factor both ways
    if op.resize is None:
        fits = skip == value
    else:
        fits = (
            skip[0] == value[0]
            and (value[1], value[2]) == (factor * skip[1], factor * skip[2])
            and factor >= 2
        )
    if fits:
        return ""
    if op.resize is None:
        return f"`{op.skip}` is {_shape(skip)} but the value it is added to is {_shape(value)}"
    return (
        f"`resize: bicubic` enlarges `{op.skip}` ({_shape(skip)}) by a whole factor of 2 or more, the same "
        f"for height and width, and keeps its channels; it cannot give the {_shape(value)} it is added to"
    )


_GENERATED_NAME = re.compile(r"block\d+|b\d+(_.*)?|(dwt|idwt|add)\d+|mean_shift\d+(_out)?")


def _is_generated_name(name: str) -> bool:
    """Names of the lowering's own: blocks and their values, the numbered ops."""
    return bool(_GENERATED_NAME.fullmatch(name))


def _shape(shape: tuple[int, int, int]) -> str:
    return f"{shape[0]} x {shape[1]} x {shape[2]}"


def size_multiple(spec: ImageSpec) -> int:
    """What the input's sides must be multiples of: 2 per wavelet level the network goes down."""
    depth = deepest = 0
    for op in spec.network:
        depth += {"dwt": 1, "idwt": -1}.get(op.op, 0)
        deepest = max(deepest, depth)
    return 2**deepest
