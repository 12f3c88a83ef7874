"""The compiler's intermediate representations.

``UpdateGraph``: a ``networkx.DiGraph`` with one node per tensor of a clique block and one
edge per term of a stage equation (see :mod:`cliquegen.lower`).

``Program``: the whole network as a flat, topologically ordered list of :class:`Op` over
declared modules (:class:`ModuleDecl`).  Every emitter translates the same Program, so the
FX module and the generated source compute the same thing with the same parameter names.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from ..spec.model import BlockConfig
from .graph_blocks import GraphBlock, weight_label

#: Node of an UpdateGraph: (block, layer, stage); X0 of block b is (b, 0, 0).
NodeId = tuple[int, int, int]


@dataclass(frozen=True)
class BlockInfo:
    """What an UpdateGraph records of one block, beside its nodes and edges."""

    config: BlockConfig | None  # the shorthand the block was written as; None for an explicit graph
    input_channels: int  # of X0
    #: What the block's head reads, concatenated in this order; empty where no head reads it.
    feature: tuple[NodeId, ...]
    #: What its transition reads; empty for the last block, which transits nothing.
    transit: tuple[NodeId, ...]
    #: The block in the form every block is lowered from.
    graph: GraphBlock | None = None


def graph_blocks(graph: nx.DiGraph) -> tuple[BlockInfo, ...]:
    """The blocks of an UpdateGraph, first to last."""
    return graph.graph["blocks"]


#: Kinds of declared modules and what each holds.
MODULE_KINDS = {
    "weight": "a bare conv weight Parameter of `shape` (a W_ij: shared by every stage, or one stage's own)",
    "conv2d": "nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)",
    "batch_norm": "nn.BatchNorm2d(num_features)",
    "linear": "nn.Linear(in_features, out_features, bias=True)",
    "dropout": "nn.Dropout(p)",
    "identity": "nn.Identity() (the classifier of a model with num_classes 0)",
    "conv": "nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias), "
    "initialised like the W_ij, a zero bias",
    "bias": "a bare Parameter of `channels` zeros: a node's conv bias beside its W_ij",
    "prelu": "nn.PReLU(num_parameters): one slope per channel, starting at 0.25",
    "constant": "a buffer outside the state_dict: `values` (float32) viewed as (1, C, 1, 1)",
}

#: Kinds of ops; the attributes each one reads are listed after the colon.
OP_KINDS = {
    "input": "the network input (B, C, H, W); memory_format: None, or 'channels_last' to convert "
    "it at entry (values and shapes unchanged)",
    "call": "self.<module>(x): module",
    "relu": "F.relu(x): inplace (x is a fresh value that no other op reads, e.g. BatchNorm's output)",
    "sigmoid": "torch.sigmoid(x)",
    "cat": "torch.cat(inputs, dim=1)",
    "max_pool": "F.max_pool2d(x, kernel_size, stride, padding): kernel_size, stride, padding",
    "avg_pool": "F.avg_pool2d(x, kernel_size): kernel_size",
    "global_pool": "mean over H and W -> (B, C)",
    "scale": "x * gate[:, :, None, None] (channel-wise gate)",
    "leaky_relu": "F.leaky_relu(x, negative_slope)",
    "conv": "F.conv2d(x, cat(weights), bias, 1, padding): one convolution over an update's "
    "concatenated inputs with its W_ij concatenated (bias: a module path or None)",
    "slice": "x[:, start:end] (a node's slice of a block input)",
    "add": "a + b",
    "mul": "x * factor (a block output's res_scale)",
    "shift": "x + self.<constant> (a fixed mean shift): constant",
    "dwt": "Haar DWT (B, C, H, W) -> (B, 4C, H/2, W/2), band-major LL, HL, LH, HH",
    "idwt": "inverse Haar DWT (B, 4C, h, w) -> (B, C, 2h, 2w)",
    "upsample": "bicubic enlargement by a whole factor, as MATLAB's imresize: scale",
    "update": "one clique update: cat -> bn -> relu -> conv(cat(weights)) [-> dropout] "
    "[-> bottleneck_bn -> relu -> bottleneck_conv [-> dropout]]: "
    "bn, weights, padding, dropout, bottleneck_bn, bottleneck_conv, node, memory_efficient "
    "(recompute cat -> bn -> relu -> conv in the backward pass when training)",
}


@dataclass(frozen=True)
class ModuleDecl:
    """A parameter-holding (or stateless) module at dotted ``path``."""

    path: str
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Op:
    """One step of the Program; ``name`` is the value it defines."""

    name: str
    kind: str
    inputs: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    part: str = ""  # stem, block1, transition1, head, classifier: for per-part tables
    comment: str | None = None  # the stage equation of an update
    shape: tuple[int, ...] = ()  # of the value, without the batch dimension
    macs: int = 0  # multiply-accumulates of convolutions (a bicubic enlargement's too) and linears, one image


@dataclass(frozen=True)
class Group:
    """A run of consecutive ops that one generated method runs.

    ``inputs``: values its ops read that earlier ops define; ``outputs``: values it defines
    that later ops read (or that are the Program's ``features`` or ``output``); both in
    definition order.  An ``input`` op's value is defined inside the group, not an input.
    """

    name: str  # the part that begins it: stem, block1, ..., classifier; or features
    ops: tuple[Op, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def parts(self) -> list[str]:
        return list(dict.fromkeys(op.part for op in self.ops if op.part))


#: Parts that begin a group; the parts after one (a transition, a head) join its group.
_GROUP_START = re.compile(r"stem|block\d+|classifier")
_BLOCK_PART = re.compile(r"block\d+")


@dataclass
class Program:
    """The network as straight-line code."""

    name: str
    modules: dict[str, ModuleDecl]
    ops: list[Op]
    output: str
    features: str | None  # pooled feature vector, input of the classifier; None in an image network
    classifier: str | None  # module path of the final linear layer (an identity with no classes)
    #: One value per block: the map it hands on (to its transition; the last block, to the head),
    #: what ``forward_intermediates`` returns.
    block_outputs: tuple[str, ...] = ()

    @cached_property
    def values(self) -> dict[str, Op]:
        """The op that defines each value (the Program is not changed once scheduled)."""
        return {op.name: op for op in self.ops}

    def parts(self) -> list[str]:
        return list(dict.fromkeys(op.part for op in self.ops if op.part))

    def feature_info(self) -> list[dict[str, Any]]:
        """timm's description of the block outputs: channels, reduction of the input's side,
        and the module (``block1`` ...) that holds the block."""
        _, height, _ = next(op.shape for op in self.ops if op.kind == "input")
        return [
            {
                "num_chs": self.values[name].shape[0],
                "reduction": height // self.values[name].shape[1],
                "module": f"block{index + 1}",
            }
            for index, name in enumerate(self.block_outputs)
        ]

    def groups(self) -> list[Group]:
        """The ops in runs of one method each: the stem; each block with the transition and
        head ops that follow it; the op that makes ``features`` when it reads the values of
        several runs (the concatenation of the blocks' pooled features), on its own, named
        ``features``; the classifier.  In an image network (no features): the ops before the
        first block (``stem``), each block, and each run of ops between or after blocks
        (``tail``, numbered when there are several).  Inputs and outputs come from def-use
        liveness."""
        runs: list[tuple[str, list[Op]]] = []
        run_of: dict[str, int] = {}  # value -> index of the run that defines it
        part = None
        for op in self.ops:
            joins = op.name == self.features and len({run_of[name] for name in op.inputs}) > 1
            if joins:
                runs.append(("features", []))
            elif self.features is None:  # an image network
                block = _BLOCK_PART.fullmatch(op.part)
                if not runs or (op.part != part and (block or _BLOCK_PART.fullmatch(part or ""))):
                    runs.append((op.part if block else "stem" if not runs else "tail", []))
            elif not runs or (op.part != part and _GROUP_START.fullmatch(op.part)):
                runs.append((op.part, []))
            part = op.part
            runs[-1][1].append(op)
            run_of[op.name] = len(runs) - 1
        tails = [index for index, (name, _) in enumerate(runs) if name == "tail"]
        if len(tails) > 1:
            for number, index in enumerate(tails, 1):
                runs[index] = (f"tail{number}", runs[index][1])
        order = {op.name: index for index, op in enumerate(self.ops)}
        inputs: list[set[str]] = [set() for _ in runs]
        outputs: list[set[str]] = [set() for _ in runs]
        for index, (_, ops) in enumerate(runs):
            for op in ops:
                for name in op.inputs:
                    if run_of[name] != index:
                        inputs[index].add(name)
                        outputs[run_of[name]].add(name)
        for name in (self.features, self.output):
            if name is not None:
                outputs[run_of[name]].add(name)
        return [
            Group(
                name,
                tuple(ops),
                tuple(sorted(inputs[i], key=order.get)),
                tuple(sorted(outputs[i], key=order.get)),
            )
            for i, (name, ops) in enumerate(runs)
        ]

    def module_inputs(self, op: Op) -> Iterator[str]:
        """Module paths an op uses."""
        if op.kind == "call":
            yield op.attrs["module"]
        elif op.kind == "shift":
            yield op.attrs["constant"]
        elif op.kind == "conv":
            yield from op.attrs["weights"]
            if op.attrs["bias"]:
                yield op.attrs["bias"]
        elif op.kind == "update":
            yield op.attrs["bn"]
            yield from op.attrs["weights"]
            for key in ("dropout", "bottleneck_bn", "bottleneck_conv"):
                if op.attrs.get(key):
                    yield op.attrs[key]

    def lint(self) -> None:
        """Check the invariants emitters rely on; a failure is a compiler bug."""
        defined: set[str] = set()
        used_modules: set[str] = set()
        for op in self.ops:
            if op.kind not in OP_KINDS:
                raise AssertionError(f"op {op.name!r}: unknown kind {op.kind!r}")
            if op.name in defined:
                raise AssertionError(f"value {op.name!r} is defined twice")
            if not is_identifier(op.name):
                raise AssertionError(f"value {op.name!r} is not a safe identifier")
            for name in op.inputs:
                if name not in defined:
                    raise AssertionError(f"op {op.name!r} uses {name!r} before it is defined")
            for path in self.module_inputs(op):
                if path not in self.modules:
                    raise AssertionError(f"op {op.name!r} uses undeclared module {path!r}")
                used_modules.add(path)
            defined.add(op.name)
        for name in (self.output, self.features, *self.block_outputs):
            if name is not None and name not in defined:
                raise AssertionError(f"{name!r} is never defined")
        unused = set(self.modules) - used_modules
        if unused:
            raise AssertionError(f"declared but unused modules: {sorted(unused)}")
        for path, decl in self.modules.items():
            if decl.kind not in MODULE_KINDS:
                raise AssertionError(f"module {path!r}: unknown kind {decl.kind!r}")
            if not all(is_identifier(part) for part in path.split(".")):
                raise AssertionError(f"module path {path!r} is not made of identifiers")


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.match(name)) and not keyword.iskeyword(name)


def sanitize_identifier(text: str) -> str:
    """The one function that turns user text into a Python identifier."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        name += "_"
    return name


def node_label(layer: int, stage: int) -> str:
    """``X0`` or ``X3(2)``: how the paper writes a tensor."""
    return "X0" if layer == 0 else f"X{layer}({stage})"


def equation(graph: nx.DiGraph, node: NodeId) -> str:
    """The stage equation of an updated tensor, e.g. ``X3(2) = g(W13*X1(2) + W43*X4(1))``."""
    terms = [
        f"{weight_label(*graph.edges[src, node]['weight'])}*{node_label(src[1], src[2])}"
        for src in sorted(graph.predecessors(node), key=lambda n: n[1])
    ]
    _, layer, stage = node
    return f"{node_label(layer, stage)} = g({' + '.join(terms)})"
