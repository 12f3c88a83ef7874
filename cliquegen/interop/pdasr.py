"""PDASR's refiner checkpoints <-> cliquegen state_dicts of the sub-band clique specs.

PDASR (Zhang et al., ECCV 2022) keeps its refinement network ``CliqueNet`` under these keys
(``funsion`` is their spelling), each tensor one of ours renamed:

=====================================  ====================================
theirs                                 ours
=====================================  ====================================
``preConv0.*``, ``preConv1.*``         the two convs before the group (``shallow``, ``widen``)
``CliqueBlock.{i}.F{n}{k}.0.*``        ``block{i+1}.conv_{n}_s{k}.*`` (n in ll, lh, hl, hh)
``CliqueBlock.{i}.F{n}{k}.1.weight``   ``block{i+1}.act_{n}_s{k}.weight`` (PReLU slopes)
``funsion.body.0.*``                   the group's fusion conv (``fuse``)
``tail.body.0.*``                      the conv after the skip (``to_bands``)
``sub_mean.*``, ``add_mean.*``         none: our mean shifts are constants
=====================================  ====================================

Their mean shifts are frozen 1x1 convs (identity weight, bias -/+ 255 * mean); importing checks
that they hold exactly our constants, and exporting writes them.  Their trained file is the
state_dict of the whole two-stage model, whose refiner keys carry a ``P.`` prefix beside the
first network's ``D.*``: import takes the ``P.`` keys and ignores the rest, strictly otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..checkpoint.load import shape_text
from ..compiler.lower import compile_spec
from ..errors import WeightsError
from ..spec.network import ImageSpec
from .convert import Conversion, convert_pairs, plain_state_dict

REFINER_PREFIX = "P."  # their SRADMM: the refiner is P, the first network D

_BLOCK_MODULE = re.compile(
    r"^block(?P<block>\d+)\.(?P<part>conv|act)_(?P<node>ll|lh|hl|hh)_s(?P<stage>[12])$"
)
_SLOTS = ("ll", "lh", "hl", "hh")


@dataclass(frozen=True)
class _Layout:
    pairs: list[tuple[str, str, tuple[int, ...]]]  # (theirs, ours, shape), in their key order
    shifts: dict[str, tuple[float, ...]]  # their mean-shift module -> our constant's values


def _layout(spec: ImageSpec) -> _Layout:
    """Their name and shape of every tensor of the spec's model; WeightsError when the spec
    is not PDASR's refiner (a mean shift, a DWT, two convs, one fused group of sub-band
    cliques, a skip, a conv, an inverse DWT, a mean shift)."""
    if not isinstance(spec, ImageSpec):
        raise WeightsError(
            f"spec {spec.name!r} is a classification network; PDASR's refiner is an image network"
        )
    kinds = [op.op for op in spec.network]
    expected = ["mean_shift", "dwt", "conv", "conv", "group", "add", "conv", "idwt", "mean_shift"]
    problems = []
    if kinds != expected:
        problems.append(f"its network is {', '.join(kinds)}; PDASR's refiner is {', '.join(expected)}")
    else:
        group = spec.network[4]
        graph = spec.graphs[group.graph]
        if group.fuse is None:
            problems.append("its group has no `fuse`; PDASR fuses the block outputs (funsion)")
        if list(graph.nodes or {}) != list(_SLOTS) or graph.weights != "per-update":
            problems.append(
                "its graph needs nodes ll, lh, hl, hh and weights: per-update (PDASR's ResClique)"
            )
        if graph.unit.kind != "post" or graph.unit.act != "prelu" or not graph.unit.bias:
            problems.append("its graph's unit is not conv (with bias) -> PReLU")
        if any(not op.bias for op in spec.network if op.op == "conv") or (group.fuse and not group.fuse.bias):
            problems.append("PDASR's convs all have a bias")
    if problems:
        raise WeightsError(
            f"spec {spec.name!r} cannot hold PDASR's refiner weights:\n  " + "\n  ".join(problems)
        )

    program = compile_spec(spec).program
    convs = [op.name for op in spec.network if op.op == "conv"]
    fixed = {convs[0]: "preConv0", convs[1]: "preConv1", spec.network[4].fuse.name: "funsion.body.0"}
    fixed[convs[2]] = "tail.body.0"
    blocks: dict[tuple[int, int, str], list[tuple[str, str, tuple[int, ...]]]] = {}
    pairs_fixed: dict[str, list[tuple[str, str, tuple[int, ...]]]] = {}
    shifts: dict[str, tuple[float, ...]] = {}
    for path, decl in program.modules.items():
        a = decl.args
        if decl.kind == "constant":
            shifts["sub_mean" if not shifts else "add_mean"] = tuple(a["values"])
            continue
        if decl.kind == "conv":
            tensors = [
                (".weight", (a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"])),
                (".bias", (a["out_channels"],)),
            ]
        elif decl.kind == "prelu":
            tensors = [(".weight", (a["num_parameters"],))]
        else:
            raise WeightsError(f"internal: PDASR has no counterpart of module {path!r} ({decl.kind})")
        match = _BLOCK_MODULE.match(path)
        if match:
            block, stage, node = int(match["block"]), int(match["stage"]), match["node"]
            theirs = f"CliqueBlock.{block - 1}.F{node}{stage}.{0 if match['part'] == 'conv' else 1}"
            entries = blocks.setdefault((block, stage, node), [])
        elif path in fixed:
            theirs = fixed[path]
            entries = pairs_fixed.setdefault(theirs, [])
        else:
            raise WeightsError(f"internal: PDASR has no counterpart of module {path!r}")
        entries += [(theirs + suffix, path + suffix, shape) for suffix, shape in tensors]
    pairs = pairs_fixed["preConv0"] + pairs_fixed["preConv1"]
    for key in sorted(blocks, key=lambda key: (key[0], key[1], _SLOTS.index(key[2]))):  # their order
        pairs += blocks[key]
    pairs += pairs_fixed["funsion.body.0"] + pairs_fixed["tail.body.0"]
    return _Layout(pairs, shifts)


def _refiner_keys(source: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The refiner's keys of a bare refiner state_dict, or of a whole SRADMM one (``P.``
    keys, without the prefix); and the keys left out (the first network's)."""
    if not any(key.startswith(REFINER_PREFIX) for key in source):
        return source, []
    kept = {
        key[len(REFINER_PREFIX) :]: value for key, value in source.items() if key.startswith(REFINER_PREFIX)
    }
    return kept, [key for key in source if not key.startswith(REFINER_PREFIX)]


def _shift_tensors(values: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Their frozen 1x1 mean-shift conv holding our constant: identity weight, bias = values."""
    channels = len(values)
    return torch.eye(channels).view(channels, channels, 1, 1), torch.tensor(values, dtype=torch.float32)


def convert_from_pdasr(state_dict: Mapping[str, Any], spec: ImageSpec) -> Conversion:
    """PDASR's refiner state_dict (bare, or their whole model's with ``P.`` keys) in
    cliquegen's names, strictly; its mean shifts must be our constants exactly."""
    layout = _layout(spec)
    source, others = _refiner_keys(plain_state_dict(state_dict))
    problems = []
    for module, values in layout.shifts.items():
        weight, bias = _shift_tensors(values)
        for suffix, want in ((".weight", weight), (".bias", bias)):
            value = source.pop(module + suffix, None)
            if value is None:
                problems.append(f"missing {module}{suffix} (their frozen mean shift)")
            elif not isinstance(value, torch.Tensor) or value.shape != want.shape:
                problems.append(
                    f"{module}{suffix} has shape {shape_text(getattr(value, 'shape', ()))}, "
                    f"expected {shape_text(want.shape)}"
                )
            elif not torch.equal(value.detach().float().cpu(), want):
                problems.append(
                    f"{module}{suffix} is not the spec's mean shift ({', '.join(f'{v:g}' for v in values)}); "
                    "the spec's mean_shift must match their rgb_mean and rgb_range"
                )
    if problems:
        raise WeightsError(f"the weights do not fit spec {spec.name!r}:\n  " + "\n  ".join(problems))
    conversion = convert_pairs(
        source,
        [(theirs, ours, shape) for theirs, ours, shape in layout.pairs],
        spec,
        ignore=lambda key: False,
    )
    conversion.ignored += others
    return conversion


def to_pdasr(state_dict: Mapping[str, Any], spec: ImageSpec) -> dict[str, torch.Tensor]:
    """A cliquegen state_dict of a PDASR spec in their refiner's names and key order, with
    their frozen mean shifts: their ``CliqueNet`` loads it with strict=True."""
    layout = _layout(spec)
    source = plain_state_dict(state_dict)
    pairs = [(ours, theirs, shape) for theirs, ours, shape in layout.pairs]
    result = convert_pairs(source, pairs, spec, ignore=lambda key: False).state_dict
    for module, values in layout.shifts.items():
        result[f"{module}.weight"], result[f"{module}.bias"] = _shift_tensors(values)
    return result
