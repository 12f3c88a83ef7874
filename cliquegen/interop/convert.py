"""Strict tensor mapping between a foreign state_dict layout and cliquegen's: every source tensor
is used exactly once, every target is filled, every shape and dtype kind is checked, and anything
else raises :class:`~cliquegen.errors.WeightsError` listing the problems.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..checkpoint.layouts import DATA_PARALLEL_PREFIX
from ..checkpoint.load import dtype_kind, load_weights, shape_text
from ..compiler.ir import ModuleDecl
from ..errors import WeightsError
from ..models import build_fx
from ..spec.model import Spec

#: Tensors of each kind of declared module, as suffixes of the module path
#: ("" is a bare Parameter, e.g. a W_ij).
TENSORS = {
    "weight": ("",),
    "conv2d": (".weight",),
    "batch_norm": (".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked"),
    "linear": (".weight", ".bias"),
    "dropout": (),
    "identity": (),
}


@dataclass(frozen=True)
class Entry:
    """One tensor under its two names, with the shape cliquegen's model gives it."""

    ours: str
    theirs: str
    shape: tuple[int, ...]


@dataclass
class Conversion:
    """A converted state_dict and what the conversion tolerated on the way."""

    state_dict: dict[str, torch.Tensor]
    ignored: list[str] = field(default_factory=list)  # source keys accepted but not used
    filled: list[str] = field(default_factory=list)  # target keys the source lacked (zeros)


def declared_shapes(decl: ModuleDecl) -> list[tuple[int, ...]]:
    """Shapes of the tensors of a declared module, in the order of ``TENSORS[kind]``."""
    a = decl.args
    if decl.kind == "weight":
        return [tuple(a["shape"])]
    if decl.kind == "conv2d":
        return [(a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"])]
    if decl.kind == "batch_norm":
        c = a["num_features"]
        return [(c,), (c,), (c,), (c,), ()]
    if decl.kind == "linear":
        return [(a["out_features"], a["in_features"]), (a["out_features"],)]
    if decl.kind in ("dropout", "identity"):
        return []
    raise WeightsError(f"internal: unknown module kind {decl.kind!r} of {decl.path!r}")


def check_loads(state_dict: Mapping[str, torch.Tensor], spec: Spec) -> None:
    """Raise WeightsError unless ``create_model(spec)`` loads the state_dict with strict=True."""

    load_weights(build_fx(spec), state_dict, spec)


def plain_state_dict(obj: Any) -> dict[str, Any]:
    """The state_dict inside a checkpoint (the authors' ``state_dict`` entry, the ``model`` entry
    of a ``cliquegen train`` checkpoint), with any ``module.`` prefix removed."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # {"epoch", "state_dict", "best_prec1", "optimizer"}
    elif "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # {"model", "info", "optimizer", ...} of last.pt and best.pt
    plain: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"expected a state_dict with string keys, found the key {key!r}")
        name = key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key
        if name in plain:
            raise WeightsError(f"the key {name!r} appears both with and without the `module.` prefix")
        plain[name] = value
    if not plain:
        raise WeightsError("the state_dict is empty")
    return plain


def convert_pairs(
    source: dict[str, Any],
    pairs: list[tuple[str, str, tuple[int, ...]]],
    spec: Spec,
    ignore: Callable[[str], bool],
) -> Conversion:
    """Copy ``source[name]`` to ``target`` for every (name, target, shape); strict about the rest."""
    return convert_links(
        source, [Link(((name, shape),), ((target, shape),)) for name, target, shape in pairs], spec, ignore
    )


@dataclass(frozen=True)
class Link:
    """Source tensors that make target tensors: the sources concatenated along dim 1 are the
    targets concatenated along dim 1 (one to one, or a conv weight over a concatenated input
    and the W_ij that are its slices); each as (name, shape)."""

    sources: tuple[tuple[str, tuple[int, ...]], ...]
    targets: tuple[tuple[str, tuple[int, ...]], ...]


def convert_links(
    source: dict[str, Any], links: list[Link], spec: Spec, ignore: Callable[[str], bool]
) -> Conversion:
    """Fill every link's targets from its sources; strict: every source key used once, every
    shape checked, every problem listed."""
    result = Conversion({})
    problems: list[str] = []
    for link in links:
        names = " + ".join(target for target, _ in link.targets)
        values = []
        for name, shape in link.sources:
            value = source.get(name)
            if value is None:
                if name.endswith(".num_batches_tracked"):  # absent from pre-0.4.1 checkpoints
                    value = torch.zeros((), dtype=torch.long)
                    result.filled.append(link.targets[0][0])
                else:
                    problems.append(f"missing {name} (for {names}, shape {shape_text(shape)})")
                    continue
            elif not isinstance(value, torch.Tensor):
                problems.append(f"{name} (for {names}) is a {type(value).__name__}, not a tensor")
                continue
            elif tuple(value.shape) != shape:
                problems.append(
                    f"{name} (for {names}) has shape {shape_text(value.shape)}, expected {shape_text(shape)}"
                )
                continue
            elif dtype_kind(value.dtype) != expected_kind(name):
                problems.append(
                    f"{name} (for {names}) holds {dtype_kind(value.dtype)} values ({value.dtype}), "
                    f"expected {expected_kind(name)}"
                )
                continue
            values.append(value.detach())
        if len(values) != len(link.sources):
            continue
        if len(link.sources) == 1 and len(link.targets) == 1:
            result.state_dict[link.targets[0][0]] = values[0].clone()
            continue
        whole = torch.cat(values, 1)
        parts = torch.split(whole, [shape[1] for _, shape in link.targets], 1)
        for (target, _), part in zip(link.targets, parts, strict=True):
            result.state_dict[target] = part.clone()
    used = {name for link in links for name, _ in link.sources}
    for key, value in source.items():
        if key in used:
            continue
        if ignore(key):
            result.ignored.append(key)
        else:
            problems.append(f"unexpected {key} (shape {shape_text(getattr(value, 'shape', '?'))})")
    if problems:
        shown = "\n  ".join(problems[:8])
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        plural = "s" if len(problems) > 1 else ""
        raise WeightsError(
            f"the weights do not fit spec {spec.name!r} ({len(problems)} problem{plural}):\n  {shown}{more}"
        )
    return result


def expected_kind(name: str) -> str:
    """What a tensor of a state_dict holds: counts in ``num_batches_tracked``, else real numbers."""
    return "integer" if name.endswith(".num_batches_tracked") else "floating-point"
