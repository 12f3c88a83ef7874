"""The authors' PyTorch ImageNet checkpoints <-> cliquegen state_dicts.

The authors' ImageNet code (docs/paper.md, "The authors' PyTorch ImageNet code")
names its modules ``fir_trans``, ``list_block.b.conv_param.{i*(n+1)+j}``, ``loop_bn`` ...;
cliquegen names the same tensors ``stem.conv``, ``block{b+1}.w{i}_{j}``, ``bn{j}_s2`` ...
:func:`official_mapping` pairs the two names of every tensor, with the shape cliquegen
expects, from the spec's compiled Program; :func:`from_official` and :func:`to_official`
apply it strictly: every source tensor is used exactly once, every target is filled, every
shape is checked, and anything else raises :class:`~cliquegen.errors.WeightsError`.

Two tolerated differences, both documented in ``docs/weights.md``:

- ``num_batches_tracked`` buffers are mapped when present and filled with 0 when absent
  (checkpoints saved before PyTorch 0.4.1 have none; eval-mode BatchNorm does not read them);
- ``list_block.b.conv_param.0`` (i = 0, j = 0: X0 into X0, which no equation uses; their
  published code never saves it) is accepted and ignored; every other unused ``conv_param``
  entry is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..checkpoint.layouts import DATA_PARALLEL_PREFIX, OFFICIAL_FORMAT
from ..compiler.lower import compile_spec
from ..errors import WeightsError
from ..spec.model import GraphUse, Spec
from .convert import TENSORS, Conversion, Entry, convert_pairs, declared_shapes, plain_state_dict

_BLOCK_MODULE = re.compile(
    r"^block(?P<block>\d+)\.(?:"
    r"w(?P<i>\d+)_(?P<j>\d+)"
    r"|bn(?P<bn>\d+)_s(?P<bn_stage>\d+)"
    r"|bottleneck_bn(?P<bbn>\d+)_s(?P<bbn_stage>\d+)"
    r"|bottleneck(?P<bottle>\d+)"
    r")$"
)


_NUMBERED_MODULE = re.compile(
    r"^(?P<part>transition|head\.compress|head\.bn)(?P<block>\d+)(?P<rest>(\..*)?)$"
)


def check_convertible(spec: Spec) -> None:
    """Raise WeightsError unless the spec has the layout the authors' ImageNet code builds."""
    problems = []
    if spec.stem.kind != "imagenet":
        problems.append(f"stem.kind is {spec.stem.kind!r}; their code has the imagenet stem")
    if spec.input.channels != 3:
        problems.append(f"input.channels is {spec.input.channels}; their stem reads 3 channels")
    if spec.head.kind != "multiscale":
        problems.append(f"head.kind is {spec.head.kind!r}; their head is multiscale")
    elif not spec.head.compression:
        problems.append("head.compression is false; their head always compresses")
    if spec.transition.compression != 1:
        ratio = spec.transition.compression
        problems.append(f"transition.compression is {ratio}; their transitions keep all C channels")
    for block in spec.resolved_blocks():
        at = f"block {block.index + 1}"
        if isinstance(block, GraphUse):
            problems.append(
                f"{at}: graph `{block.graph.name}`, an explicit graph; their blocks are complete cliques"
            )
            continue
        if not block.bottleneck:
            problems.append(f"{at}: bottleneck is false; their blocks always have the bottleneck")
        elif block.kernel != 3:
            problems.append(f"{at}: kernel is {block.kernel}; their bottleneck convs are 3x3")
        if block.stages != 2:
            problems.append(f"{at}: stages is {block.stages}; their blocks run Stage I and Stage II")
        if block.partial is not None:
            problems.append(f"{at}: partial is {block.partial}; their Stage II updates every layer")
        if list(block.order) != sorted(block.order):
            problems.append(f"{at}: order is {list(block.order)}; their order is ascending")
        if list(block.feature) != ["x0", 2]:
            problems.append(f"{at}: feature is {list(block.feature)}; their block feature is [x0, 2]")
        if block.transit != (2,) and block.index + 1 < len(spec.blocks):
            shown = block.transit[0] if len(block.transit) == 1 else list(block.transit)
            problems.append(f"{at}: transit is {shown}; they carry Stage II to the next block")
        if not block.share_weights:
            problems.append(f"{at}: share_weights is false; their stages share every W_ij")
        if block.bottleneck_width != 1:
            width = block.bottleneck_width
            problems.append(f"{at}: bottleneck_width is {width}; their W_ij produce k channels")
    if problems:
        raise WeightsError(
            f"spec {spec.name!r} cannot hold the authors' {OFFICIAL_FORMAT} weights:\n  "
            + "\n  ".join(problems)
        )


def official_mapping(spec: Spec) -> list[Entry]:
    """Every tensor of the spec's model: cliquegen name, authors' name (no ``module.``), shape.

    In cliquegen's parameter order; raises WeightsError for a spec their code cannot express.
    """
    check_convertible(spec)
    program = compile_spec(spec).program
    layers = [block.layers for block in spec.resolved_blocks()]
    entries = []
    for path, decl in program.modules.items():
        theirs = _official_module(path, layers)
        for suffix, shape in zip(TENSORS[decl.kind], declared_shapes(decl), strict=True):
            name = theirs + (suffix or ".weight")  # a bare W_ij is their conv's .weight
            entries.append(Entry(path + suffix, name, shape))
    return entries


def _official_module(path: str, layers: list[int]) -> str:
    """The authors' module path of one of our module paths."""
    fixed = {"stem.conv": "fir_trans", "stem.bn": "fir_bn", "classifier": "fc"}
    if path in fixed:
        return fixed[path]
    match = _BLOCK_MODULE.match(path)
    if match:
        g = {key: int(value) for key, value in match.groupdict().items() if value is not None}
        b = g["block"] - 1
        at = f"list_block.{b}"
        if "i" in g:  # W_ij, i = 0 is X0
            return f"{at}.conv_param.{g['i'] * (layers[b] + 1) + g['j']}"
        if "bottle" in g:
            return f"{at}.conv_param_bottle.{g['bottle'] - 1}"
        if "bn" in g:
            return f"{at}.{_stage_list('bn', g['bn_stage'])}.{g['bn'] - 1}"
        return f"{at}.{_stage_list('bn_b', g['bbn_stage'])}.{g['bbn'] - 1}"
    match = _NUMBERED_MODULE.match(path)
    if match:
        b = int(match["block"]) - 1
        part = {"transition": "list_trans", "head.compress": "list_compress", "head.bn": "list_gb"}
        rest = match["rest"] if match["part"] != "head.bn" else ".bn"
        return f"{part[match['part']]}.{b}{rest}"
    raise WeightsError(f"internal: no name in the {OFFICIAL_FORMAT} layout for module {path!r}")


def _stage_list(kind: str, stage: int) -> str:
    """Their BatchNorm lists: forward_* for Stage I, loop_* for Stage II."""
    if stage not in (1, 2):
        raise WeightsError(f"internal: the {OFFICIAL_FORMAT} layout has no stage {stage}")
    return ("forward_" if stage == 1 else "loop_") + kind


def _is_ignored_official_key(key: str) -> bool:
    """``list_block.b.conv_param.0.weight``: W_00 (X0 into X0), built by some versions of
    their code but used by no equation."""
    return re.fullmatch(r"list_block\.\d+\.conv_param\.0\.weight", key) is not None


def from_official(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """The authors' checkpoint (full dict or bare state_dict, ``module.`` keys or not) in
    cliquegen's names, ready for ``create_model(spec).load_state_dict(..., strict=True)``."""
    return convert_from_official(state_dict, spec).state_dict


def to_official(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """A cliquegen state_dict in the authors' names (no ``module.`` prefix; see
    :func:`official_checkpoint` for the file their training script writes)."""
    pairs = [(e.ours, e.theirs, e.shape) for e in official_mapping(spec)]
    source = plain_state_dict(state_dict)
    _check_overlap(source, pairs, "the cliquegen", f"the {OFFICIAL_FORMAT} checkpoint", "export-weights")
    return convert_pairs(source, pairs, spec, ignore=lambda key: False).state_dict


def convert_from_official(state_dict: Mapping[str, Any], spec: Spec) -> Conversion:
    """:func:`from_official`, also saying which keys were ignored or filled."""
    pairs = [(e.theirs, e.ours, e.shape) for e in official_mapping(spec)]
    source = plain_state_dict(state_dict)
    _check_overlap(source, pairs, f"the {OFFICIAL_FORMAT}", "a cliquegen state_dict", "import-weights")
    return convert_pairs(source, pairs, spec, ignore=_is_ignored_official_key)


def _check_overlap(
    source: dict[str, Any], pairs: list[tuple[str, str, tuple[int, ...]]], layout: str, other: str, fix: str
) -> None:
    """A clear message when no key at all is of the expected layout (the wrong kind of file)."""
    names = {name for name, _, _ in pairs}
    if names & set(source):
        return
    keys = sorted(source)
    hint = ""
    if {target for _, target, _ in pairs} & set(source):
        hint = f"; its keys are those of {other} already: no `{fix}` is needed"
    raise WeightsError(
        f"no key of the state_dict ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}) "
        f"is a key of {layout} layout (such as {pairs[0][0]}){hint}"
    )


def official_checkpoint(state_dict: Mapping[str, Any], spec: Spec, *, epoch: int = 0) -> dict[str, Any]:
    """What their ImageNet training script saves: ``module.``-prefixed weights (it trains under
    ``nn.DataParallel``), the epoch, best top-1 and an SGD state their ``--resume`` accepts."""
    theirs = to_official(state_dict, spec)
    params = [key for key in theirs if not key.rsplit(".", 1)[-1].startswith(("running_", "num_batches"))]
    sgd_group = {
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0,
        "weight_decay": 1e-4,
        "nesterov": False,
        "params": list(range(len(params))),
    }
    return {
        "epoch": epoch,
        "state_dict": {DATA_PARALLEL_PREFIX + key: value for key, value in theirs.items()},
        "best_prec1": 0.0,
        "optimizer": {"state": {}, "param_groups": [sgd_group]},
    }
