"""``cliquegen sweep --grid KEY=V1,V2,...``: the variants of a sweep.

Every spec given to the sweep, with its ``--set`` assignments, is crossed with every value of
every ``--grid`` key (the cross product, in the order given).  Each variant is named after its
spec and the grid values it takes, ``cliquenet-k36-t12@stages=3,channels=64`` (each key by the
shortest ending that tells it from the other grid keys), and carries its resolved spec text,
which the sweep saves in the variant's run folders and trains from.  Values are YAML, split at
the commas outside brackets and quotes: ``--grid 'defaults.feature=[x0,1],[x0,2]'`` has two.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostic, SpecError, printable
from ..spec.limits import check_limits
from ..spec.model import Spec
from ..spec.overrides import (
    Assignment,
    apply_assignments,
    parse_assignment,
    short_keys,
    value_text,
)
from ..spec.shipped import resolve_spec

#: The spec file each run folder of a variant holds, and trains from.
VARIANT_SPEC = "spec.yaml"

_SAFE = re.compile(r"[^A-Za-z0-9._,=@+\-\[\]{}:]")  # what a variant's name keeps in a folder name
_MAX_NAME = 200  # bytes of a folder name, with room below the usual 255


@dataclass(frozen=True)
class Variant:
    """One cell of a sweep: a spec, the assignments that made it, its name and resolved text."""

    name: str  # the results' label and the run folders' name: cliquenet-k36-t12@stages=3
    given: str  # the SPEC as given to the sweep
    spec: Spec
    text: str | None  # the resolved spec as YAML; None when nothing was set (train the SPEC itself)
    #: The grid keys as given and this variant's value of each: one results column per key.
    varied: dict[str, Any] = field(default_factory=dict)


def split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    values, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:index])
            start = index + 1
    values.append(text[start:])
    return [value.strip() for value in values]


def parse_grid(text: str) -> tuple[str, list[Assignment]]:
    """``KEY=V1,V2,...`` as its key and one assignment per value."""

    def refuse(message: str) -> SpecError:
        return SpecError([Diagnostic(f"--grid {text}", None, None, printable(message))])

    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise refuse("expected KEY=V1,V2,..., e.g. `--grid defaults.schedule.stages=1,2,3`")
    values = split_values(raw)
    if any(not value for value in values):
        raise refuse("an empty value; separate the values by single commas (quote a value that is empty)")
    assignments = [parse_assignment(f"{key}={value}", flag="--grid") for value in values]
    shown = [value_text(a.value) for a in assignments]
    twice = sorted({value for value in shown if shown.count(value) > 1})
    if twice:
        raise refuse(f"the value {twice[0]} is listed twice")
    return key, assignments


def expand(specs: list[str], sets: list[str], grids: list[str]) -> list[Variant]:
    """Every spec x every combination of the grid values, validated and within the size limits;
    every problem of every variant is reported before any run starts."""
    common = [parse_assignment(text) for text in sets]
    keyed = [parse_grid(text) for text in grids]
    keys = [key for key, _ in keyed]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        message = f"`{repeated[0]}` is gridded twice; give all its values in one --grid"
        raise SpecError([Diagnostic("--grid", None, None, message)])
    shown = short_keys(keys)
    variants, diagnostics = [], []
    for given in specs:
        base = resolve_spec(given)
        for cell in itertools.product(*(assignments for _, assignments in keyed)):
            try:
                spec = apply_assignments(base, [*common, *cell])
                check_limits(spec, path=given)
            except SpecError as error:
                diagnostics += [d for d in error.diagnostics if d not in diagnostics]
                continue
            label = ",".join(f"{shown[key]}={value_text(a.value)}" for key, a in zip(keys, cell, strict=True))
            assignments = [*common, *cell]
            variants.append(
                Variant(
                    name=folder_name(f"{base.name}@{label}" if label else base.name),
                    given=given,
                    spec=spec,
                    text=spec.provenance.text if assignments else None,
                    varied={key: a.value for key, a in zip(keys, cell, strict=True)},
                )
            )
    if diagnostics:
        raise SpecError(diagnostics)
    return variants


def folder_name(name: str) -> str:
    """``name`` as one safe folder name: characters outside a small set become ``_``, and a
    name too long for a file system is cut, with a hash of the whole to keep it unique."""
    safe = _SAFE.sub("_", name)
    if len(safe.encode()) <= _MAX_NAME:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{safe[: _MAX_NAME - 13]}~{digest}"
