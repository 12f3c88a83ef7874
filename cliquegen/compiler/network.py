"""Lowering of image-to-image networks (:class:`~cliquegen.spec.network.ImageSpec`).

The ``network:`` ops become Program ops in order; every block of a ``group`` is an explicit
graph block (:func:`~.graph_blocks.explicit_block`) added to the UpdateGraph and scheduled
by the same code as a classification network's blocks (:mod:`.lower_blocks`).  Blocks are
numbered through the whole network (``block1`` ... ``block15``).  Each op's part is the
module it declares (``shallow``, ``block3``, ``fuse``) or its own name (``dwt1``), so the
summary lists the network op by op.
"""

from __future__ import annotations

import struct

import networkx as nx

from ..spec.graph import Activation, LeakyReLUSpec
from ..spec.network import INPUT_SKIP, ImageSpec
from .builder import ProgramBuilder, with_norm_and_init
from .graph_blocks import explicit_block
from .ir import BlockInfo, Program
from .lower_blocks import add_block, schedule_output, schedule_updates

#: Taps per output pixel and axis of ``_runtime.bicubic_upsample``'s convolutions.
BICUBIC_TAPS = 5


def lower_image(spec: ImageSpec) -> tuple[nx.DiGraph, Program]:
    """The UpdateGraph and Program of an image network."""
    graphs = spec.resolved_graphs()
    graph = nx.DiGraph(name=spec.name)
    infos: list[BlockInfo] = []
    p = ProgramBuilder()
    p.part = "input"
    x = p.op(
        "x", "input", shape=(spec.input.channels, spec.input.height, spec.input.width), memory_format=None
    )
    saved: dict[str, str] = {INPUT_SKIP: x}
    block_outputs: list[str] = []
    counts: dict[str, int] = {}

    def numbered(kind: str) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]}"

    for op in spec.network:
        if op.op == "conv":
            p.part = op.name
            x = _conv(p, op.name, x, op.out, op.kernel, op.bias, op.act)
        elif op.op == "mean_shift":
            name = op.name or numbered("mean_shift")
            p.part = name
            values = _shift_values(op.mean, op.scale, op.sign)
            p.module(name, "constant", values=values)
            x = p.op(f"{name}_out", "shift", (x,), shape=p.shapes[x], constant=name)
        elif op.op == "dwt":
            p.part = numbered("dwt")
            c, h, w = p.shapes[x]
            x = p.op(p.part, "dwt", (x,), shape=(4 * c, h // 2, w // 2))
        elif op.op == "idwt":
            p.part = numbered("idwt")
            c, h, w = p.shapes[x]
            x = p.op(p.part, "idwt", (x,), shape=(c // 4, 2 * h, 2 * w))
        elif op.op == "add":
            p.part = numbered("add")
            skip = saved[op.skip]
            if op.resize is not None:
                c, h, w = p.shapes[skip]
                factor = p.shapes[x][1] // h
                taps = BICUBIC_TAPS * c * factor * w * (h + factor * h)  # the rows, then the columns
                skip = p.op(
                    f"{p.part}_{op.resize}", "upsample", (skip,), shape=p.shapes[x], macs=taps, scale=factor
                )
            x = p.op(p.part, "add", (x, skip), shape=p.shapes[x])
        elif op.op == "group":
            outputs = []
            for _ in range(op.blocks):
                index = len(infos)
                p.part = f"block{index + 1}"
                block = explicit_block(graphs[op.graph], index, p.shapes[x][0])
                infos.append(add_block(graph, block, input_name=x))
                schedule_updates(p, graph, block, spec.memory_efficient)
                x = schedule_output(p, graph, block)
                outputs.append(x)
            block_outputs += outputs
            if op.fuse is not None:
                fuse = op.fuse
                p.part = fuse.name
                h = p.cat(f"{fuse.name}_in", outputs)
                x = _conv(p, fuse.name, h, fuse.out, fuse.kernel, fuse.bias, fuse.act)
        else:
            raise AssertionError(f"unknown network op {op.op!r}")
        if op.save is not None:
            saved[op.save] = x
    graph.graph["blocks"] = tuple(infos)
    return graph, Program(
        spec.name,
        {path: with_norm_and_init(decl, spec.norm, spec.init) for path, decl in p.modules.items()},
        p.ops,
        output=x,
        features=None,
        classifier=None,
        block_outputs=tuple(block_outputs),
    )


def _conv(
    p: ProgramBuilder, name: str, x: str, out: int, kernel: int, bias: bool, act: Activation | None
) -> str:
    """Conv ``name`` (value ``name``), then its activation (value and PReLU ``{name}_act``)."""
    h = p.biased_conv(name, name, x, out, kernel, bias=bias)
    if act is None:
        return h
    if isinstance(act, LeakyReLUSpec):
        return p.activation(f"{name}_act", h, "leaky_relu", act.leaky_relu, f"{name}_act")
    return p.activation(f"{name}_act", h, act, 0.0, f"{name}_act")


def _shift_values(mean: list[float], scale: float, sign: int) -> tuple[float, ...]:
    """sign * scale * mean, each product rounded to float32 as a float32 tensor computes it
    (the values of the frozen mean-shift conv of EDSR-style code).  The product of two float32
    numbers is exact in a double, so rounding it once gives float32 multiplication's result."""
    factor = _float32(sign * scale)
    return tuple(_float32(_float32(m) * factor) for m in mean)


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]
