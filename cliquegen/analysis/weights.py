"""Weight strengths of a trained clique block: per block, the matrix of mean |W_ij| (rows i = X0,
X1 .. Xn, columns j = 1 .. n) and how evenly each layer draws on the others (Gini).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..compiler.ir import graph_blocks, node_label
from ..compiler.lower import Compiled
from ..errors import UsageError


@dataclass(frozen=True)
class WeightMatrix:
    """Mean |W_ij| of one block (or of one stage of a block with untied weights)."""

    block: int  # from 1
    stages: list[int]  # the stages whose weights the matrix shows (all of them when tied)
    tied: bool  # one W_ij for every stage
    matrix: list[list[float | None]]  # [i][j - 1], i = 0 (X0) .. n
    parameters: list[list[str | None]]  # the state_dict key of each entry
    gini: float

    @property
    def rows(self) -> list[str]:
        return [node_label(i, 0) if i == 0 else f"X{i}" for i in range(len(self.matrix))]

    @property
    def columns(self) -> list[str]:
        return [f"X{j}" for j in range(1, len(self.matrix))]

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "stages": self.stages,
            "rows": self.rows,
            "columns": self.columns,
            "matrix": self.matrix,
            "parameters": self.parameters,
            "gini": self.gini,
        }


def weight_usage(compiled: Compiled) -> dict[int, dict[tuple[int, int], dict[int, str]]]:
    """block (from 0) -> (i, j) -> stage -> the state_dict key of the W_ij that stage applies."""
    graph, program = compiled.graph, compiled.program
    node_of = {data["name"]: node for node, data in graph.nodes(data=True)}
    usage: dict[int, dict[tuple[int, int], dict[int, str]]] = {}
    for op in program.ops:
        if op.kind != "update":
            continue
        target = op.attrs["node"]
        weights = op.attrs["weights"]
        if len(weights) != len(op.inputs):
            raise AssertionError(f"update {op.name!r}: {len(op.inputs)} inputs but {len(weights)} weights")
        for value, path in zip(op.inputs, weights, strict=True):
            i, j = graph.edges[node_of[value], target]["weight"]
            decl = program.modules[path]
            key = path if decl.kind == "weight" else f"{path}.weight"
            usage.setdefault(target[0], {}).setdefault((i, j), {})[target[2]] = key
    return usage


def gini(values: Iterable[float]) -> float:
    """Gini coefficient: mean absolute difference over all pairs / (2 x mean); 0 when even."""
    xs = sorted(values)
    n, total = len(xs), sum(xs)
    if n < 2 or total == 0:
        return 0.0
    # sum_{a,b} |x_a - x_b| = 2 * sum_k (2k - n + 1) x_(k) for sorted x, k from 0
    return sum((2 * k - n + 1) * x for k, x in enumerate(xs)) / (n * total)


def weight_matrices(
    compiled: Compiled, state_dict: Mapping[str, torch.Tensor], block: int | None = None
) -> list[WeightMatrix]:
    """The mean |W_ij| matrices of every block (or of block ``block``, from 1)."""
    blocks = graph_blocks(compiled.graph)
    _check_block(block, len(blocks))
    if all(info.config is None for info in blocks):
        raise UsageError(
            f"analyze weights reads the W_ij of clique blocks; {compiled.spec.name} is built of "
            "explicit graphs"
        )
    graphs = [b + 1 for b, info in enumerate(blocks) if info.config is None and block in (None, b + 1)]
    if graphs:
        listed = ", ".join(map(str, graphs))
        what = (
            "blocks {} of {} are explicit graphs"
            if len(graphs) > 1
            else "block {} of {} is an explicit graph"
        )
        raise UsageError(
            f"analyze weights reads the W_ij of clique blocks; {what.format(listed, compiled.spec.name)}"
            " (--block N picks a clique block)"
        )
    usage = weight_usage(compiled)
    matrices = []
    for b, info in enumerate(blocks):
        if block is not None and b + 1 != block:
            continue
        n = info.config.layers
        pairs = usage.get(b, {})
        stages = sorted({stage for by_stage in pairs.values() for stage in by_stage})
        tied = all(len(set(by_stage.values())) == 1 for by_stage in pairs.values())
        groups = [stages] if tied else [[stage] for stage in stages]
        for group in groups:
            keys: list[list[str | None]] = [[None] * n for _ in range(n + 1)]
            for (i, j), by_stage in pairs.items():
                used = {by_stage[s] for s in group if s in by_stage}
                if used:
                    (keys[i][j - 1],) = used
            matrix = [[None if key is None else _mean_abs(state_dict, key) for key in row] for row in keys]
            present = [v for row in matrix for v in row if v is not None]
            matrices.append(WeightMatrix(b + 1, group, tied, matrix, keys, gini(present)))
    return matrices


def _mean_abs(state_dict: Mapping[str, torch.Tensor], key: str) -> float:
    return float(state_dict[key].detach().double().abs().mean())


def _check_block(block: int | None, count: int) -> None:
    if block is not None and not 1 <= block <= count:
        raise UsageError(f"--block {block}: the spec has blocks 1..{count}")
