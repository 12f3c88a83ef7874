"""``--set KEY=VALUE``: a variant of a spec without a new file.

``KEY`` is a dotted path into the spec (``defaults.schedule.stages``, ``blocks.2.layers``;
blocks count from 1, as everywhere else, and ``blocks.*.channels`` sets every clique block: a
graph block ``{graph: name}`` has none of their keys), ``VALUE``
is YAML (``3``, ``[x0, last]``, ``{kind: imagenet}``, ``null``).  Assignments merge as
:func:`~cliquegen.spec.shipped.apply_overrides` merges ``create_model``'s overrides: a mapping
changes only the keys it names, anything else (a list too) replaces the value, and ``null``
removes the key, so that its default applies (``create_model`` ignores ``None``).  The variant is
validated as a spec file is, and every problem is reported at the assignment that caused it::

    --set defaults.dropot=0.1: error: unknown key `dropot`; did you mean `dropout`?
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import Diagnostic, SpecError, printable
from .base import Provenance
from .diagnose import explain_validation_error
from .model import Loc, Spec, SpecSemanticError
from .network import ImageSpec
from .shipped import merge_mappings, resolve_spec
from .yaml_tree import YamlTree, longest_prefix

_VALUE = "value"  # the key a value is read under: `--set k=V` is read as the YAML `value: V`
_POSITION = re.compile(r",? (at )?line \d+(, column \d+)?")


@dataclass(frozen=True)
class Assignment:
    """One ``--set KEY=VALUE``: the text as given, the path (blocks from 1, ``*`` for all) and
    the value read as YAML, with the nodes of its tree for messages."""

    text: str
    path: tuple[str | int, ...]
    value: Any
    tree: YamlTree
    flag: str = "--set"  # the option that gave it, for messages

    @property
    def key(self) -> str:
        return self.text.partition("=")[0].strip()

    @property
    def where(self) -> str:
        return f"{self.flag} {self.text}"


def parse_assignment(text: str, flag: str = "--set") -> Assignment:
    """``KEY=VALUE`` as an :class:`Assignment`; a SpecError names the assignment otherwise."""
    key, equals, raw = text.partition("=")

    def refuse(message: str) -> SpecError:
        return SpecError([Diagnostic(f"{flag} {text}", None, None, printable(message))])

    if not equals:
        return _raise(refuse("expected KEY=VALUE, e.g. `--set defaults.dropout=0.1`"))
    parts = key.strip().split(".")
    if not all(parts):
        return _raise(refuse(f"`{key.strip()}` is not a dotted path of keys such as `defaults.dropout`"))
    path: list[str | int] = []
    for part in parts:
        if part.isascii() and part.isdigit():
            if int(part) < 1:
                return _raise(refuse(f"`{key.strip()}`: list entries count from 1"))
            path.append(int(part))
        else:
            path.append(part)
    try:
        tree = YamlTree(f"{flag} {text}", f"{_VALUE}: {raw}", looks_like_path=False)
    except SpecError as error:  # positions in the `value: ...` line read here mean nothing to the user
        raise SpecError(
            [Diagnostic(d.path, None, None, _POSITION.sub("", d.message)) for d in error.diagnostics]
        ) from None
    return Assignment(text, tuple(path), tree.value[_VALUE], tree, flag)


def _raise(error: SpecError) -> Any:
    raise error


def apply_assignments(spec: Spec | ImageSpec, assignments: list[Assignment]) -> Spec | ImageSpec:
    """``spec`` with every assignment applied in order, validated as one spec."""
    if not assignments:
        return spec
    data = spec.model_dump(exclude_unset=True)
    places = _Places()
    for assignment in assignments:
        created: list[Loc] = []
        for loc in _assign(data, assignment, created):
            places.add(loc, assignment, created)
    try:
        variant = type(spec).model_validate(data)
    except ValidationError as error:
        diagnostics = explain_validation_error(error, places, type(spec))  # type: ignore[arg-type]
    except SpecSemanticError as error:
        diagnostics = [places.value_at(places.locate(loc), message) for loc, message in error.problems]
    else:  # the variant comes from its resolved text, which names the spec and the assignments
        base = spec.provenance.path
        where = printable(f"{base} {' '.join(a.where for a in assignments)}")
        return variant.with_provenance(
            Provenance.of_text(where, variant_text(variant, base, assignments), "text")
        )
    raise SpecError(list(dict.fromkeys(diagnostics)))


def resolve_variant(name_or_path: str | Spec | ImageSpec, sets: list[str]) -> Spec | ImageSpec:
    """A shipped name, spec path or Spec with the ``--set`` assignments ``sets`` applied."""
    spec = resolve_spec(name_or_path)
    return apply_assignments(spec, [parse_assignment(text) for text in sets]) if sets else spec


def variant_text(spec: Spec | ImageSpec, base: str, assignments: list[Assignment]) -> str:
    """The resolved spec as YAML that loads back to ``spec``, headed by where it came from."""
    sets = " ".join(a.where for a in assignments)
    header = printable(f"# {base} {sets}".rstrip()).replace("\n", " ")
    data = spec.model_dump(mode="json", exclude_unset=True)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
    return f"{header}\n{body}"


def _graph_block(block: Any) -> bool:
    return isinstance(block, dict) and "graph" in block


def _assign(data: dict[str, Any], assignment: Assignment, created: list[Loc]) -> list[Loc]:
    """Write the assignment's value into ``data``; the spec locations it wrote (0-based).
    The mappings it had to make on the way are appended to ``created``."""
    shown = assignment.key

    def refuse(message: str) -> SpecError:
        return SpecError([Diagnostic(assignment.where, None, None, printable(message))])

    def walk(container: Any, path: tuple[str | int, ...], loc: Loc) -> list[Loc]:
        part, rest = path[0], path[1:]
        where = ".".join(str(p + 1 if isinstance(p, int) else p) for p in loc) or "the spec"
        if isinstance(container, list):
            if part == "*" and loc == ("blocks",) and rest:  # the keys of clique blocks
                indices = [i for i, block in enumerate(container) if not _graph_block(block)]
                if not indices:
                    raise refuse(
                        f"every block is a graph block (`graph:`); `{shown}` sets a key of clique blocks"
                    )
            elif part == "*":
                indices = range(len(container))
            elif isinstance(part, int) and part <= len(container):
                indices = range(part - 1, part)
            elif isinstance(part, int):
                raise refuse(f"`{where}` has {len(container)} entries; `{shown}` names entry {part}")
            else:
                raise refuse(f"`{where}` is a list: name an entry from 1 (`{where}.1`) or all (`{where}.*`)")
            keys: list[str | int] = list(indices)
        elif isinstance(container, dict):
            if part == "*" or isinstance(part, int):
                raise refuse(f"`{where}` is a mapping: name one of its keys, not `{part}`")
            keys = [part]
        else:
            raise refuse(f"`{where}` is {_kind(container)}, which has no `{part}`")
        written = []
        for key in keys:
            here = (*loc, key)
            if rest:
                if isinstance(container, dict) and container.get(key) is None:
                    container[key] = {}
                    created.append(here)
                written += walk(container[key], rest, here)
            else:
                old = container[key] if isinstance(container, list) else container.get(key)
                value = assignment.value
                if value is None and isinstance(container, dict):  # null: not written, the default applies
                    container.pop(key, None)
                else:
                    container[key] = merge_mappings(old, value) if isinstance(old, dict) else value
                written.append(here)
        return written

    return walk(data, assignment.path, ())


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return "empty" if value is None else type(value).__name__


class _Places:
    """Where each part of the variant came from, for the diagnostics of the spec loader: the
    nodes of the assignments' values under the spec locations they wrote.  A problem outside
    every assignment (a value of the spec file that no longer fits) is named by all of them."""

    def __init__(self) -> None:
        self.nodes: dict[Loc, tuple[yaml.Node | None, yaml.Node | None]] = {(): (None, None)}
        self._owner: dict[Loc, Assignment] = {}
        self._all: list[Assignment] = []

    def add(self, loc: Loc, assignment: Assignment, created: list[Loc]) -> None:
        self._all.append(assignment)
        for end in range(1, len(loc)):  # the mappings and lists on the way, owned if it made them
            self.nodes.setdefault(loc[:end], (None, None))
            if loc[:end] in created:
                self._owner[loc[:end]] = assignment
        for value_loc, nodes in assignment.tree.nodes.items():
            if value_loc[:1] == (_VALUE,):
                here = loc + value_loc[1:]
                self.nodes[here] = nodes
                self._owner[here] = assignment

    def locate(self, loc: Loc) -> Loc:
        return longest_prefix(self.nodes, loc)

    def value_at(self, loc: Loc, message: str) -> Diagnostic:
        owner = self._owner.get(loc)
        every = " ".join(dict.fromkeys(a.where for a in self._all))
        return Diagnostic(owner.where if owner else every, None, None, printable(message))

    key_at = value_at


def value_text(value: Any) -> str:
    """A value as short YAML flow text for names: ``3``, ``[x0,last]``, ``{kind:imagenet}``."""
    if isinstance(value, list):
        return "[" + ",".join(map(value_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{value_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest ending that no other key of ``keys`` shares:
    ``defaults.schedule.stages`` -> ``stages``, unless ``blocks.1.schedule.stages`` is there too."""
    shown = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            tail = ".".join(parts[-size:])
            if all(other == key or not ("." + other).endswith("." + tail) for other in keys):
                break
        shown[key] = tail
    return shown


def variant_name(name: str, assignments: list[Assignment]) -> str:
    """``cliquenet-k36-t12@stages=3,channels=64``: the spec's name and what the variant sets."""
    if not assignments:
        return name
    keys = short_keys(list(dict.fromkeys(a.key for a in assignments)))
    return name + "@" + ",".join(f"{keys[a.key]}={value_text(a.value)}" for a in assignments)
