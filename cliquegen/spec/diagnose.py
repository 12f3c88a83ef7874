"""Located diagnostics for a spec that is valid YAML but not a valid spec: pydantic's
validation errors and :class:`~cliquegen.spec.model.SpecSemanticError` problems, which both
name locations such as ``("blocks", 0, "layers")``, worded as a person would fix them and
placed at the node of the :class:`~cliquegen.spec.yaml_tree.YamlTree` that holds the value::

    specs/x.yaml:7:15: error: `layers` must be at least 1, got 0
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic, code_points
from .model import CLIQUE_BLOCK, GRAPH_BLOCK, NAME_PATTERN, BlockSpec, Loc, Spec
from .yaml_tree import BAD, YamlTree, describe, entries, yaml_text

# Shown after "missing required key `x`" so the message says what to write.
_EXAMPLES = {
    "name": "name: my-cliquenet",
    "num_classes": "num_classes: 10",
    "blocks": "blocks: [{layers: 4, channels: 36}]",
    "layers": "layers: 4",
    "channels": "channels: 36",
}


def explain_validation_error(
    error: ValidationError, tree: YamlTree, root: type[BaseModel] = Spec
) -> list[Diagnostic]:
    """Located diagnostics for pydantic's errors; ``root`` is the model the spec was validated
    into (a :class:`Spec`, or an image network's model)."""
    diagnostics = []
    by_node: dict[Loc, list[tuple[dict[str, Any], bool]]] = {}
    items = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden" and GRAPH_BLOCK in loc and loc[-1] in BlockSpec.model_fields:
            diagnostics.append(tree.key_at(tree.locate(loc), _beside_graph_message(str(loc[-1]))))
            continue
        # the tags pydantic puts in the location of a block (a union member) name no node
        items.append({**item, "loc": tuple(part for part in loc if part not in (CLIQUE_BLOCK, GRAPH_BLOCK))})
    suggested = {  # (mapping, key) for each key offered as the fix of an unknown key
        (tree.locate(item["loc"][:-1]), close)
        for item in items
        if item["type"] == "extra_forbidden"
        for close in close_fields(tuple(item["loc"]), root)
    }
    for item in items:
        loc = tuple(item["loc"])
        if item["type"] == "missing":
            parent, key = tree.locate(loc[:-1]), str(loc[-1])
            if (parent, key) in suggested:
                continue
            example = f" (e.g. `{_EXAMPLES[key]}`)" if key in _EXAMPLES else ""
            diagnostics.append(tree.value_at(parent, f"missing required key `{key}`{example}"))
        elif item["type"] == "extra_forbidden":
            diagnostics.append(tree.key_at(tree.locate(loc), _unknown_key_message(loc, root)))
        else:
            here = tree.locate(loc)
            by_node.setdefault(here, []).append((item, here != loc))
    for here in list(by_node):
        # a union member that refused the value's type (`transit: [x0, two]` is no integer, nor
        # `last`) is noise when another member accepted the type and found a problem inside it
        deeper = any(len(other) > len(here) and other[: len(here)] == here for other in by_node)
        if deeper:
            by_node[here] = [
                (item, from_union)
                for item, from_union in by_node[here]
                if not (from_union and (item["type"].endswith("_type") or item["type"] == "literal_error"))
            ]
    for here, items in by_node.items():
        if not items:
            continue
        node = tree.nodes[here][0]
        if len(items) > 1 and all(from_union for _, from_union in items):
            diagnostics.append(tree.value_at(here, _union_message(here, [i for i, _ in items], node)))
        else:
            diagnostics += [tree.value_at(here, _value_message(here, item, node)) for item, _ in items]
    return diagnostics


def _beside_graph_message(key: str) -> str:
    return (
        f"`{key}` is a key of clique blocks; a graph block (`graph:`) takes its nodes, unit and stages "
        f"from its graph and no `defaults`: remove `{key}`, or `graph`"
    )


def explain_problem(loc: Loc, message: str, tree: YamlTree, root: type[BaseModel] = Spec) -> Diagnostic:
    """A SpecSemanticError problem; a location absent from the file is a built-in default."""
    here = tree.locate(loc)
    if here != loc:
        keys = [part for part in loc if isinstance(part, str)]
        default = _default_of(keys, root)
        simple = isinstance(default, (int, float, str, list, tuple, type(None)))
        shown = f" {yaml_text(default)}" if simple else ""
        message += f" (`{'.'.join(keys)}` is not set, so the built-in default{shown} applies)"
    return tree.value_at(here, message)


def _value_message(loc: Loc, item: dict[str, Any], node: yaml.Node) -> str:
    expected = _expectation(item)
    if expected is None:  # no better wording: pydantic's own, in our style
        msg = item["msg"].removeprefix("Value error, ")  # raised by our own validators
        return f"{_label(loc)}: {msg[:1].lower()}{msg[1:]}"
    message = f"{_label(loc)} must be {expected}, got {describe(item['input'], node)}"
    return message + _hint(item, node)


def _union_message(loc: Loc, items: list[dict[str, Any]], node: yaml.Node) -> str:
    """Several members of a union refused the same value: say what any of them would accept."""
    options = []
    for item in items:
        expected = _expectation(item) or item["msg"].lower()
        member = str(item["loc"][-1])
        if item["type"] in _BOUNDS and "int" in member:
            expected = f"an integer {'of ' if expected.startswith('at ') else ''}{expected}"
        for option in expected.split(" or "):  # a literal's "'x0' or 'last'" lists two options
            if option not in options:
                options.append(option)
    listed = " or ".join(options) if len(options) < 3 else ", ".join(options[:-1]) + " or " + options[-1]
    hint = next((h for h in (_hint(item, node) for item in items) if h), "")
    return f"{_label(loc)} must be {listed}, got {describe(items[0]['input'], node)}{hint}"


_TYPES = {
    "int_type": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}


_BOUNDS = {
    "greater_than_equal": "at least {ge}",
    "greater_than": "greater than {gt}",
    "less_than_equal": "at most {le}",
    "less_than": "less than {lt}",
}


def _expectation(item: dict[str, Any]) -> str | None:
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind in _TYPES:
        return _TYPES[kind]
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**ctx)
    if kind == "literal_error":
        return ctx["expected"]
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == NAME_PATTERN:
            return (
                "lower-case letters, digits and '-', starting with a letter and not ending with '-' "
                "(e.g. `cliquenet-k36-t12`)"
            )
        return f"text matching the pattern {ctx.get('pattern')}"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters long"
    if kind == "too_short":
        return f"a list of at least {entries(ctx['min_length'])}"
    if kind == "too_long":
        return f"a list of at most {entries(ctx['max_length'])}"
    return None


def _hint(item: dict[str, Any], node: yaml.Node) -> str:
    value, kind = item["input"], item["type"]
    plain = isinstance(node, yaml.ScalarNode) and node.style is None
    if isinstance(value, str) and kind in ("int_type", "float_type", "bool_type") and not plain:
        return "; remove the quotes"
    if isinstance(value, float) and kind == "int_type" and value.is_integer():
        return f"; write {int(value)}"
    if isinstance(value, str) and kind in ("int_type", "float_type") and plain:
        number = _yaml12_number(value)
        if number is not None:
            return f"; YAML 1.1 reads `{value}` as text: write {number}"
    if kind == "string_type" and plain and value is not None:
        return "; quote it to make it a string"
    if isinstance(value, str) and kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", item["ctx"]["expected"])
        close = difflib.get_close_matches(value, allowed, n=1)
        if close:
            return f"; did you mean '{close[0]}'?"
    return ""


_YAML12_INT = re.compile(r"[-+]?(0o[0-7]+|0x[0-9a-fA-F]+)")


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _yaml12_number(text: str) -> str | None:
    """``text`` in decimal when YAML 1.2 reads it as a number (``1e-3``, ``0o17``), else None."""
    if _YAML12_INT.fullmatch(text):
        return str(int(text, 0))
    if _YAML12_FLOAT.fullmatch(text) and len(text) <= 40:
        number = float(text)
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    return None


def _unknown_key_message(loc: Loc, root: type[BaseModel] = Spec) -> str:
    key, model = str(loc[-1]), _model_at(loc[:-1], root)
    fields = list(model.model_fields) if model else []
    homes = _homes(model, key) if model else []
    shown = f"`{key}`{code_points(key)}"
    if homes:
        return f"unknown key {shown} here; it belongs under " + " or ".join(f"`{h}`" for h in homes)
    close = close_fields(loc, root)
    if close:
        return f"unknown key {shown}; did you mean `{close[0]}`?"
    return f"unknown key {shown}; the keys here are " + ", ".join(f"`{f}`" for f in fields)


def close_fields(loc: Loc, root: type[BaseModel] = Spec) -> list[str]:
    model = _model_at(loc[:-1], root)
    return difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1) if model else []


def _submodels(annotation: Any) -> list[tuple[type[BaseModel], bool]]:
    """The models inside a field's type, each with whether it is reached through a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    in_list = typing.get_origin(annotation) is list
    return [
        (model, in_list or listed) for arg in typing.get_args(annotation) for model, listed in _submodels(arg)
    ]


def _model_at(loc: Loc, root: type[BaseModel] = Spec) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    members: list[type[BaseModel]] = []  # the models of a union, which pydantic's loc names by tag
    for part in loc:
        tagged = [member for member in members if part in _tags(member)]
        if tagged:
            model, members = tagged[0], []
        elif model is not None and isinstance(part, str) and part in model.model_fields:
            found = _submodels(model.model_fields[part].annotation)
            model = found[0][0] if found else None
            members = [member for member, _ in found]
    return model


def _tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a union member's ``op`` tag (``conv``, ``group``, ...)."""
    field = model.model_fields.get("op")
    return typing.get_args(field.annotation) if field is not None else ()


def _homes(model: type[BaseModel], key: str) -> list[str]:
    """Where ``key`` is a field, searching the models nested in ``model`` (two levels)."""
    level: list[tuple[str, type[BaseModel]]] = [("", model)]
    for _ in range(2):
        deeper = []
        for prefix, outer in level:
            for name, field in outer.model_fields.items():
                for inner, listed in _submodels(field.annotation):
                    deeper.append((f"{prefix}{name}{'[]' if listed else ''}", inner))
        homes = [path for path, inner in deeper if key in inner.model_fields]
        if homes:
            return list(dict.fromkeys(homes))
        level = [(f"{path}.", inner) for path, inner in deeper]
    return []


def _default_of(keys: list[str], root: type[BaseModel] = Spec) -> Any:
    model: type[BaseModel] | None = root
    value: Any = BAD
    for key in keys:
        if value is BAD:
            if model is None or key not in model.model_fields:
                return BAD
            value = model.model_fields[key].get_default(call_default_factory=True)
            model = None
        else:
            value = getattr(value, key, BAD)
    return value


def _label(loc: Loc) -> str:
    keys = [part for part in loc if isinstance(part, str)]
    if not keys:
        return "each entry" if loc else "the spec"
    return f"`{keys[-1]}`" if isinstance(loc[-1], str) else f"each entry of `{keys[-1]}`"
