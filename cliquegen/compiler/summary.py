"""Parameter and FLOP counts, computed from the Program without building the model.

FLOPs follow the paper and ``torch.utils.flop_counter``: 2 x the multiply-accumulates of
conv and linear layers for one image at the spec's input size; BN, ReLU, pooling and
concatenation count 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .ir import ModuleDecl, Program, graph_blocks
from .lower import Compiled


def parameter_count(decl: ModuleDecl) -> int:
    a = decl.args
    if decl.kind == "weight":
        return math.prod(a["shape"])
    if decl.kind == "conv2d":
        return a["in_channels"] * a["out_channels"] * a["kernel_size"] ** 2
    if decl.kind == "batch_norm":
        return 2 * a["num_features"]
    if decl.kind == "linear":
        return (a["in_features"] + 1) * a["out_features"]
    if decl.kind == "conv":
        return (a["in_channels"] * a["kernel_size"] ** 2 + a["bias"]) * a["out_channels"]
    if decl.kind == "bias":
        return a["channels"]
    if decl.kind == "prelu":
        return a["num_parameters"]
    if decl.kind in ("dropout", "identity", "constant"):  # a constant is a buffer, not a parameter
        return 0
    raise ValueError(f"unknown module kind {decl.kind!r}")


def _part_of(path: str) -> str:
    return path.split(".")[0]  # stem, block1, transition1, head, classifier


@dataclass(frozen=True)
class PartSummary:
    part: str
    params: int
    macs: int
    #: Shape of what the part hands on, one image: a block's transit (the last block's feature,
    #: which goes to the head), any other part's last value.
    output: tuple[int, ...]
    #: A block's feature as the head reads it (the concatenation ``feature`` names); None where the
    #: part is no block or the head reads no feature of it (head kind ``last``).
    head_reads: tuple[int, ...] | None = None

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class Summary:
    name: str
    params: int
    macs: int
    parts: list[PartSummary]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "parts": [
                {
                    **asdict(p),
                    "flops": p.flops,
                    "output": list(p.output),
                    "head_reads": None if p.head_reads is None else list(p.head_reads),
                }
                for p in self.parts
            ],
        }


def summarize(compiled: Compiled) -> Summary:
    program: Program = compiled.program
    params: dict[str, int] = {}
    for path, decl in program.modules.items():
        part = _part_of(path)
        params[part] = params.get(part, 0) + parameter_count(decl)
    parts = []
    order = program.parts()
    order.sort(key=lambda part: {"head": 1, "classifier": 2}.get(part, 0))  # stable: blocks stay in order
    hands_on = {f"block{b + 1}": program.values[name].shape for b, name in enumerate(program.block_outputs)}
    head_reads = {}
    for b, block in enumerate(graph_blocks(compiled.graph)):
        if block.feature:
            channels = sum(compiled.graph.nodes[node]["channels"] for node in block.feature)
            head_reads[f"block{b + 1}"] = (channels, *hands_on[f"block{b + 1}"][1:])
        elif block.config is None and any(
            op.part == "head" and program.block_outputs[b] in op.inputs for op in program.ops
        ):  # a graph block of a classification network: the head reads its output
            head_reads[f"block{b + 1}"] = hands_on[f"block{b + 1}"]
    for part in order:
        ops = [op for op in program.ops if op.part == part]
        output = hands_on.get(part, ops[-1].shape)
        macs = sum(op.macs for op in ops)
        parts.append(PartSummary(part, params.get(part, 0), macs, output, head_reads.get(part)))
    return Summary(program.name, sum(params.values()), sum(op.macs for op in program.ops), parts)


def millions(n: float) -> str:
    """A count as the tables print it: ``2.345M``."""
    return f"{n / 1e6:.3f}M"


def giga(n: float) -> str:
    """FLOPs as the tables print them: ``1.234G``."""
    return f"{n / 1e9:.3f}G"
