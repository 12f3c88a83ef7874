"""torchvision's DenseNet checkpoints <-> cliquegen state_dicts of the DenseNet specs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..compiler.lower import compile_spec
from ..errors import WeightsError
from ..spec.model import GraphUse, Spec
from .convert import TENSORS, Conversion, Link, convert_links, declared_shapes, plain_state_dict
from .official import _check_overlap

#: Names in torchvision's old DenseNet checkpoint files: ``denselayer1.norm.1.weight`` for
#: today's ``denselayer1.norm1.weight`` (torchvision renames them the same way on loading).
_LEGACY_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(\w+)$")


_DENSE_MODULE = re.compile(
    r"^block(?P<block>\d+)\.(?:bn(?P<norm1>\d+)_s1|bottleneck_bn(?P<norm2>\d+)_s1"
    r"|bottleneck(?P<conv2>\d+)(?:_s1)?)$"
)


_TRANSITION_MODULE = re.compile(r"^transition(?P<block>\d+)\.(?P<part>bn|conv)$")


def check_torchvision_convertible(spec: Spec) -> None:
    """Raise WeightsError unless the spec is a DenseNet in torchvision's layout."""
    problems = []
    if spec.stem.kind != "imagenet":
        problems.append(f"stem.kind is {spec.stem.kind!r}; torchvision's stem is the imagenet one")
    if spec.head.kind != "last":
        problems.append(f"head.kind is {spec.head.kind!r}; torchvision's head reads the last block (last)")
    if spec.transition.attention:
        problems.append("transition.attention is true; torchvision's transitions have none")
    for block in spec.resolved_blocks():
        at = f"block {block.index + 1}"
        if isinstance(block, GraphUse):
            problems.append(
                f"{at}: graph `{block.graph.name}`, an explicit graph; torchvision's dense blocks are "
                "cliques run for Stage I"
            )
            continue
        if block.stages != 1:
            problems.append(f"{at}: stages is {block.stages}; a dense block runs Stage I only")
        if not block.bottleneck:
            problems.append(f"{at}: bottleneck is false; torchvision's dense layers have the bottleneck")
        elif block.kernel != 3:
            problems.append(f"{at}: kernel is {block.kernel}; torchvision's conv2 is 3x3")
        if list(block.order) != sorted(block.order):
            problems.append(f"{at}: order is {list(block.order)}; torchvision's order is ascending")
        last = block.index + 1 == len(spec.blocks)
        if not last and block.transit != ("x0", 1):
            problems.append(f"{at}: transit is {list(block.transit)}; torchvision transits [x0, 1]")
        if last and block.feature != ("x0", 1):
            problems.append(f"{at}: feature is {list(block.feature)}; torchvision's head reads [x0, 1]")
    if problems:
        raise WeightsError(
            f"spec {spec.name!r} cannot hold torchvision's DenseNet weights:\n  " + "\n  ".join(problems)
        )


def torchvision_links(spec: Spec) -> list[Link]:
    """Every tensor of the spec's model under torchvision's name (source) and ours (target).

    A dense layer's ``conv1`` reads cat(X0, X1 .. X(l-1)); its weight is our W_0l .. W_(l-1)l
    concatenated along the input channels, in that order (one link, several targets).
    """
    check_torchvision_convertible(spec)
    program = compile_spec(spec).program
    conv1: dict[str, Link] = {}  # by the path of the layer's norm1, which torchvision lists first
    for op in program.ops:
        if op.kind == "update":
            b, layer, _ = op.attrs["node"]
            parts = tuple((path, tuple(program.modules[path].args["shape"])) for path in op.attrs["weights"])
            out, _, kernel, _ = parts[0][1]
            shape = (out, sum(part[1] for _, part in parts), kernel, kernel)
            name = f"features.denseblock{b + 1}.denselayer{layer}.conv1.weight"
            conv1[op.attrs["bn"]] = Link(((name, shape),), parts)
    links = []  # in torchvision's order: conv0, norm0, then norm1, conv1, norm2, conv2 of each layer ...
    for path, decl in program.modules.items():
        if decl.kind in ("weight", "dropout"):  # the W_ij are slices of conv1
            continue
        theirs = _torchvision_module(path)
        for suffix, shape in zip(TENSORS[decl.kind], declared_shapes(decl), strict=True):
            links.append(Link(((theirs + suffix, shape),), ((path + suffix, shape),)))
        if path in conv1:
            links.append(conv1[path])
    return links


def _torchvision_module(path: str) -> str:
    """torchvision's module path of one of our module paths (all but the W_ij)."""
    fixed = {"stem.conv": "features.conv0", "stem.bn": "features.norm0", "head.bn": "features.norm5"}
    if path in fixed:
        return fixed[path]
    if path == "classifier":
        return "classifier"
    match = _DENSE_MODULE.match(path)
    if match:
        layer = next(
            (key, int(value)) for key, value in match.groupdict().items() if key != "block" and value
        )
        return f"features.denseblock{match['block']}.denselayer{layer[1]}.{layer[0]}"
    match = _TRANSITION_MODULE.match(path)
    if match:
        return f"features.transition{match['block']}.{'norm' if match['part'] == 'bn' else 'conv'}"
    raise WeightsError(f"internal: no name in torchvision's DenseNet layout for module {path!r}")


def _current_torchvision_names(source: dict[str, Any]) -> dict[str, Any]:
    """``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``; both forms of one key is an error."""
    renamed: dict[str, Any] = {}
    for key, value in source.items():
        match = _LEGACY_LAYER_KEY.match(key)
        name = f"{match[1]}{match[2]}.{match[3]}" if match else key
        if name in renamed:
            raise WeightsError(f"the state_dict holds both {name} and its old name {key}")
        renamed[name] = value
    return renamed


def convert_from_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> Conversion:
    """A torchvision DenseNet state_dict (today's names or the old ``norm.1`` ones, ``module.``
    keys or not) in cliquegen's names, strictly; also says which keys were filled."""
    links = torchvision_links(spec)
    source = _current_torchvision_names(plain_state_dict(state_dict))
    pairs = [(link.sources[0][0], link.targets[0][0], link.sources[0][1]) for link in links]
    _check_overlap(source, pairs, "torchvision's DenseNet", "a cliquegen state_dict", "import-weights")
    return convert_links(source, links, spec, ignore=lambda key: False)


def from_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """:func:`convert_from_torchvision`'s state_dict, ready for ``create_model(spec)``."""
    return convert_from_torchvision(state_dict, spec).state_dict


def to_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """A cliquegen state_dict in torchvision's names: ``torchvision.models.densenet121()``
    (or the DenseNet the spec describes) loads it with strict=True."""
    links = [Link(link.targets, link.sources) for link in torchvision_links(spec)]
    source = plain_state_dict(state_dict)
    pairs = [(link.sources[0][0], link.targets[0][0], link.sources[0][1]) for link in links]
    _check_overlap(source, pairs, "the cliquegen", "torchvision's DenseNet", "export-weights")
    return convert_links(source, links, spec, ignore=lambda key: False).state_dict
