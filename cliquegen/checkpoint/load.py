"""Strict loading of weights into a model built from a spec.

:func:`load_weights` checks every tensor (key, shape, dtype kind, finite values) before anything
is copied and, when the weights do not fit, says in a few lines which layout the file looks like
(:mod:`~cliquegen.checkpoint.layouts`), the command that converts it, and the first problems of
each kind.  :func:`load_trained` builds a spec's model and loads a ``cliquegen train``
checkpoint (or a plain state_dict) into it, with what the checkpoint recorded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError
from ..models import create_model
from ..spec.limits import estimate
from ..spec.model import Spec
from ..spec.shipped import apply_overrides, resolve_spec
from .files import first_line, load_weights_file
from .info import ModelInfo, check_info_fits, read_info
from .layouts import IMPORT_FORMATS, LAYOUTS, WRAPPER_PREFIXES


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike[str] | Mapping[str, Any],
    spec: Spec,
    *,
    spec_arg: str | None = None,
) -> nn.Module:
    """Load ``weights`` into ``model`` (built from ``spec``) with ``strict=True``; return it.

    ``weights`` is a file (read by :func:`load_weights_file`) or what one holds: a state_dict,
    a ``cliquegen train`` checkpoint (its ``model``), or a checkpoint with a ``state_dict``;
    ``module.`` and ``_orig_mod.`` prefixes are removed.  Before anything is copied, every
    tensor must have the model's key and shape and a dtype of the same kind (floating point
    for weights and statistics, integer for ``num_batches_tracked``), and floating-point
    values must be finite.  Otherwise :class:`WeightsError` says, in a few lines, which
    layout the file looks like (the authors', torchvision's, a cliquegen model of another
    spec, naming it when the checkpoint records it), the command that converts it, and the
    first problems of each kind.  ``spec_arg`` is how the user named the spec (for that
    command; default ``spec.name``).
    """
    is_file = isinstance(weights, (str, os.PathLike))
    source = os.fspath(weights) if is_file else ""
    obj = load_weights_file(weights) if is_file else weights
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{_at(source)}expected a state_dict or a checkpoint, got {type(obj).__name__}")
    recorded = _recorded_spec(obj)
    state = _unwrapped(obj, source)
    expected = model.state_dict()
    problems = _fit_problems(state, expected)
    if problems:
        raise WeightsError(_misfit_message(source, state, spec, spec_arg or spec.name, recorded, problems))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # not expected after the checks above; say so plainly
        raise WeightsError(
            f"{_at(source)}the weights do not load into spec {spec.name!r}: {first_line(error)}"
        ) from None
    return model


def _at(source: str) -> str:
    """The prefix naming a weights file in messages (none for an object)."""
    return f"{source}: " if source else ""


def _unwrapped(obj: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The state_dict inside a checkpoint, wrapper prefixes removed."""
    for key in ("model", "state_dict"):  # cliquegen train; the authors' and most others
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"{_at(source)}expected a state_dict with string keys, found the key {key!r}")
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in state:
            raise WeightsError(
                f"{_at(source)}the key {name!r} appears both with and without a wrapper prefix"
            )
        state[name] = value
    if not state:
        raise WeightsError(f"{_at(source)}the state_dict is empty")
    return state


def _recorded_spec(obj: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(name, sha256) of the spec a cliquegen checkpoint records, if it records one: its
    ``info`` (``spec_name``, ``spec_sha256``), ``spec`` as a name or as ``{"name", "sha256"}``,
    or ``settings.spec`` (a name)."""
    info = obj.get("info")  # cliquegen.checkpoint.ModelInfo as a dict
    if isinstance(info, Mapping) and _is_name(info.get("spec_name")):
        return info["spec_name"], _sha(info.get("spec_sha256"))
    record = obj.get("spec")
    if record is None and isinstance(obj.get("settings"), Mapping):
        record = obj["settings"].get("spec")
    if _is_name(record):
        return record, None
    if isinstance(record, Mapping) and _is_name(record.get("name")):
        return record["name"], _sha(record.get("sha256"))
    return None


def _is_name(value: Any) -> bool:
    """A spec name a message may quote (file text: bounded, not anything)."""
    return isinstance(value, str) and 0 < len(value) <= 100


def _sha(value: Any) -> str | None:
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


@dataclass
class _Problems:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # not a tensor, or the wrong kind of dtype
    values: list[str] = field(default_factory=list)  # NaN or infinity

    def __bool__(self) -> bool:
        return any((self.missing, self.unexpected, self.shapes, self.kinds, self.values))


def dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def _fit_problems(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> _Problems:
    problems = _Problems()
    for name, target in expected.items():
        if name not in state:
            problems.missing.append(f"{name} {shape_text(target.shape)}")
            continue
        value = state[name]
        if not isinstance(value, torch.Tensor):
            problems.kinds.append(f"{name} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(target.shape):
            problems.shapes.append(
                f"{name}: {shape_text(value.shape)} in the file, {shape_text(target.shape)} in the model"
            )
        elif dtype_kind(value.dtype) != dtype_kind(target.dtype):
            problems.kinds.append(
                f"{name} holds {dtype_kind(value.dtype)} values ({value.dtype}), expected "
                f"{dtype_kind(target.dtype)} ({target.dtype})"
            )
        elif value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            problems.values.append(name)
    problems.unexpected = [
        f"{name} {shape_text(getattr(value, 'shape', '?'))}"
        for name, value in state.items()
        if name not in expected
    ]
    return problems


def _misfit_message(
    source: str,
    state: Mapping[str, Any],
    spec: Spec,
    spec_arg: str,
    recorded: tuple[str, str | None] | None,
    problems: _Problems,
) -> str:
    lines = [f"{_at(source)}the weights do not fit spec {spec.name!r}"]
    layout = next(((what, fmt) for what, pattern, fmt in LAYOUTS if any(map(pattern.match, state))), None)
    if problems.values and not (problems.missing or problems.unexpected or problems.shapes or problems.kinds):
        lines = [  # every key and shape fits: the numbers themselves are broken
            f"{_at(source)}the weights fit spec {spec.name!r}, but some are NaN or infinite "
            "(did the training run diverge?)"
        ]
    elif recorded is not None:
        name, sha = recorded
        saved = f"spec {name!r}" + (f" (sha256 {sha})" if sha else "")
        if name != spec.name:
            lines[0] += f": it holds the weights of {saved}; build the model from that spec"
        else:
            lines[0] += (
                f": it holds the weights of {saved} as it was when they were saved; the spec has changed"
            )
    elif layout is not None and layout[1] is not None:
        what, fmt = layout
        lines[0] += f": it has {what}"
        if fmt in IMPORT_FORMATS:
            lines[0] += (
                f"; convert it first: cliquegen import-weights --format {fmt} {source or 'W.pt'} "
                f"--spec {spec_arg} -o converted.pt"
            )
        else:
            lines[0] += (
                f", which cliquegen does not convert (import-weights reads {', '.join(IMPORT_FORMATS)})"
            )
    elif layout is not None:
        lines[0] += ": it has the layout of a cliquegen model of another spec (or of another version of it)"
    else:
        keys = sorted(state)
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        lines[0] += f": its keys ({shown}) are of no layout cliquegen knows"
    for label, items in (
        ("missing", problems.missing),
        ("unexpected", problems.unexpected),
        ("of another shape", problems.shapes),
        ("of the wrong type", problems.kinds),
        ("with NaN or infinite values", problems.values),
    ):
        if items:
            more = f", ... ({len(items) - 3} more)" if len(items) > 3 else ""
            lines.append(
                f"  {len(items)} tensor{'s' if len(items) > 1 else ''} {label}: {'; '.join(items[:3])}{more}"
            )
    return "\n".join(lines)


def load_weights_into(
    model: nn.Module,
    checkpoint: dict[str, Any],
    spec: Spec,
    source: str | os.PathLike,
    *,
    spec_arg: str | None = None,
) -> None:
    """:func:`cliquegen.weights.load_weights` of an already-read checkpoint; its messages
    name the file it came from."""

    try:
        load_weights(model, checkpoint, spec, spec_arg=spec_arg)
    except WeightsError as error:
        raise WeightsError(f"{source}: {error}") from None


@dataclass
class TrainedModel:
    model: nn.Module  # in eval mode
    spec: Spec
    info: ModelInfo | None  # None for a plain state_dict


def load_trained(spec: str | os.PathLike | Spec, weights: str | os.PathLike) -> TrainedModel:
    """The spec's model with ``weights`` loaded strictly, and what the checkpoint recorded.

    The record is validated (:meth:`ModelInfo.from_dict`); its ``--num-classes`` override is
    the one change it may make to the spec, and a record that disagrees with the spec (input
    size, classes, normalisation channels) is refused before any model is built."""
    checkpoint = load_weights_file(weights)
    info = read_info(checkpoint, weights)
    resolved = resolve_spec(spec)
    if info is not None:
        if info.overrides:
            resolved = apply_overrides(resolved, **info.overrides)
        check_info_fits(info, resolved, weights)
        if info.overrides:
            _check_room(checkpoint, resolved, weights)
    model = create_model(resolved)
    named = os.fspath(spec) if isinstance(spec, str | os.PathLike) else None
    load_weights_into(model, checkpoint, resolved, weights, spec_arg=named)
    return TrainedModel(model.eval(), resolved, info)


def _check_room(checkpoint: Mapping[str, Any], spec: Spec, source: str | os.PathLike) -> None:
    """A model the record's override enlarges is built only when the file holds at least as
    many numbers as it has parameters (a few bytes of record cannot ask for a huge model)."""
    state = next(
        (checkpoint[k] for k in ("model", "state_dict") if isinstance(checkpoint.get(k), Mapping)), checkpoint
    )
    held = sum(value.numel() for value in state.values() if isinstance(value, torch.Tensor))
    needed = estimate(spec).params
    if needed > held:
        raise WeightsError(
            f"{source}: its record's override num_classes: {spec.num_classes} makes spec {spec.name!r} "
            f"a model of {needed:,} parameters, but the file holds only {held:,} numbers"
        )


def shape_text(shape: Any) -> str:
    """A tensor shape as messages about weights show it: ``(64, 3, 3, 3)``."""
    return str(tuple(shape)) if not isinstance(shape, str) else shape
