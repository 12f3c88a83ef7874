"""Hypothesis strategies for explicit graph blocks, and a direct reference computation of them.

A drawn spec is a small image network: a 1x1 conv to the block width, one or two blocks of a
random graph, a 1x1 conv back to the input's channels.  The graph draws its nodes and widths,
a whole or split input, per stage a subset of nodes in a random order, each reading random
values that exist at that point (x0, input slices, values of earlier stages or of nodes
updated earlier in the stage), the unit, the weight scheme, and the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

NAMES = ("ll", "lh", "hl", "hh", "a", "b")


@st.composite
def graph_dicts(
    draw, *, max_nodes: int = 4, max_stages: int = 3, kinds: tuple[str, ...] = ("pre", "post")
) -> dict:
    n = draw(st.integers(1, max_nodes))
    names = list(NAMES[:n])
    widths = {name: draw(st.integers(1, 3)) for name in names}
    split = draw(st.booleans())
    weights = draw(st.sampled_from(["shared", "untied", "per-update"]))
    kind = draw(st.sampled_from(kinds))
    unit: dict = {"kind": kind, "kernel": draw(st.sampled_from([1, 3]))}
    if kind == "post":
        unit["bias"] = draw(st.booleans())
        unit["act"] = draw(st.sampled_from(["relu", "prelu", {"leaky_relu": 0.2}]))
    elif draw(st.booleans()):
        unit["bottleneck"] = {"width": draw(st.integers(1, 2)), "kernel": draw(st.sampled_from([1, 3]))}
    stages = []
    computed: dict[str, list[int]] = {name: [0] if split else [] for name in names}  # stages with a value
    for stage in range(1, draw(st.integers(1, max_stages)) + 1):
        order = draw(st.permutations(names))
        order = order[: draw(st.integers(1, n))]
        sources: dict[str, list[str]] = {}
        for name in order:
            options = ["x0"] + [f"{other}({k})" for other in names for k in computed[other]]
            picked = draw(st.lists(st.sampled_from(options), min_size=1, max_size=4, unique=True))
            if weights != "per-update":  # one value per node (x0 is node 0)
                seen: set[str] = set()
                picked = [
                    ref for ref in picked if not (ref.split("(")[0] in seen or seen.add(ref.split("(")[0]))
                ]
            sources[name] = picked
            computed[name].append(stage)
        stages.append({"sources": sources})
    finals = [name for name in names if computed[name]]
    options = ["x0"] + finals + [f"{name}({k})" for name in names for k in computed[name]]
    cat = draw(st.lists(st.sampled_from(options), min_size=1, max_size=4, unique=True))
    if cat == ["x0"]:  # an output needs a node's value
        cat.append(options[1])
    graph = {
        "nodes": widths,
        "input": "split" if split else "whole",
        "unit": unit,
        "weights": weights,
        "stages": stages,
        "output": {"cat": cat, "res_scale": draw(st.sampled_from([1, 0.5])), "residual": False},
    }
    return graph


def output_width(graph: dict, c0: int) -> int:
    return sum(c0 if ref == "x0" else graph["nodes"][ref.split("(")[0]] for ref in graph["output"]["cat"])


@st.composite
def image_specs(draw) -> dict:
    """An image spec (as a mapping) around one random graph."""
    graph = draw(graph_dicts())
    split = sum(graph["nodes"].values())
    c0 = split if graph["input"] == "split" else draw(st.integers(1, 4))
    residual = output_width(graph, c0) == c0 and draw(st.booleans())
    graph["output"]["residual"] = residual
    blocks = draw(st.integers(1, 2)) if output_width(graph, c0) == c0 else 1
    return {
        "name": "random-graph",
        "input": {"channels": 2, "height": 6, "width": 4},
        "output": {"kind": "image", "scale": 1},
        "graphs": {"g": graph},
        "network": [
            {"op": "conv", "name": "inp", "out": c0, "kernel": 1},
            {"op": "group", "graph": "g", "blocks": blocks},
            {"op": "conv", "name": "out", "out": 2, "kernel": 1},
        ],
    }


@st.composite
def classification_specs(draw) -> dict:
    """A classification spec (as a mapping) with a block of one random pre-activation graph,
    before or after a clique block or alone, under either head."""
    graph = draw(graph_dicts(kinds=("pre",)))
    split = sum(graph["nodes"].values())
    c0 = split if graph["input"] == "split" else draw(st.integers(1, 4))
    graph["output"]["residual"] = output_width(graph, c0) == c0 and draw(st.booleans())
    clique = {"layers": 2, "channels": 2}
    where = draw(st.sampled_from(["alone", "first", "last"]))
    blocks = {"alone": [{"graph": "g"}], "first": [{"graph": "g"}, clique], "last": [clique, {"graph": "g"}]}
    if where == "last":  # the transition keeps the clique's transit width, 2 * 2: the graph's X0
        if graph["input"] == "split" and split != 4:
            where = "first"
        else:
            graph["output"]["residual"] = output_width(graph, 4) == 4 and graph["output"]["residual"]
    return {
        "name": "random-classifier",
        "input": {"channels": 1, "height": 4, "width": 4},
        "num_classes": 3,
        "stem": {"channels": c0},
        "graphs": {"g": graph},
        "blocks": blocks[where],
        "head": {"kind": draw(st.sampled_from(["multiscale", "last"]))},
    }


def parse(ref: str) -> tuple[str, int | None]:
    if "(" not in ref:
        return ref, None
    name, stage = ref.rstrip(")").split("(")
    return name, int(stage)


def reference_block(graph: dict, params: dict[str, torch.Tensor], prefix: str, x: torch.Tensor) -> dict:
    """Every value of one block, computed from the graph's definition and the model's
    parameters (by the names the spec language gives them): ``{"lh(1)": tensor, ...}``."""
    names = list(graph["nodes"])
    unit, scheme = graph["unit"], graph["weights"]
    kernel = unit.get("kernel", 3)
    values: dict[str, torch.Tensor] = {"x0": x}
    if graph["input"] == "split":
        start = 0
        for name in names:
            values[f"{name}(0)"] = x[:, start : start + graph["nodes"][name]]
            start += graph["nodes"][name]
    position = {name: j for j, name in enumerate(names, 1)} | {"x0": 0}
    newest: dict[str, str] = {name: f"{name}(0)" for name in names if graph["input"] == "split"}
    for stage, spec in enumerate(graph["stages"], 1):
        for name, sources in spec["sources"].items():
            j = position[name]
            h = torch.cat([values[ref] for ref in sources], 1)
            if scheme == "per-update":
                key = f"w_{name}_s{stage}" if unit["kind"] == "pre" else f"conv_{name}_s{stage}.weight"
                weight = params[f"{prefix}.{key}"]
                bias = params.get(f"{prefix}.conv_{name}_s{stage}.bias")
                act_key = f"{prefix}.act_{name}_s{stage}.weight"
            else:
                own = "" if scheme == "shared" else f"_s{stage}"
                weight = torch.cat(
                    [params[f"{prefix}.w{position[parse(ref)[0]]}_{j}{own}"] for ref in sources], 1
                )
                bias = params.get(f"{prefix}.bias{j}{own}")
                act_key = f"{prefix}.act{j}{own}.weight"
            if unit["kind"] == "pre":  # eval-mode BatchNorm with the model's statistics
                bn = f"{prefix}.bn{'_' + name if scheme == 'per-update' else j}_s{stage}"
                h = F.relu(_bn(h, params, bn))
                h = F.conv2d(h, weight, None, padding=kernel // 2 if "bottleneck" not in unit else 0)
                if "bottleneck" in unit:
                    tag = f"_{name}_s{stage}" if scheme == "per-update" else f"{j}_s{stage}"
                    h = F.relu(_bn(h, params, f"{prefix}.bottleneck_bn{tag}"))
                    conv = (
                        f"_{name}_s{stage}"
                        if scheme == "per-update"
                        else f"{j}{'' if scheme == 'shared' else '_s' + str(stage)}"
                    )
                    k2 = unit["bottleneck"]["kernel"]
                    h = F.conv2d(h, params[f"{prefix}.bottleneck{conv}.weight"], None, padding=k2 // 2)
            else:
                h = F.conv2d(h, weight, bias, padding=kernel // 2)
                act = unit.get("act", "relu")
                if act == "relu":
                    h = F.relu(h)
                elif act == "prelu":
                    h = F.prelu(h, params[act_key])
                else:
                    h = F.leaky_relu(h, act["leaky_relu"])
            values[f"{name}({stage})"] = h
            newest[name] = f"{name}({stage})"
    out = torch.cat(
        [
            values[newest[ref]] if ref in newest and "(" not in ref else values[ref]
            for ref in graph["output"]["cat"]
        ],
        1,
    )
    out = out * graph["output"]["res_scale"]
    if graph["output"]["residual"]:
        out = out + x
    values["out"] = out
    return values


def _bn(h: torch.Tensor, params: dict[str, torch.Tensor], path: str) -> torch.Tensor:
    return F.batch_norm(
        h,
        params[f"{path}.running_mean"],
        params[f"{path}.running_var"],
        params[f"{path}.weight"],
        params[f"{path}.bias"],
    )
