"""Load a YAML spec into a :class:`~cliquegen.spec.Spec`, locating every problem in the file.

The YAML is composed into a node tree with PyYAML's safe loader (no Python tags, ever) and
converted by hand into plain Python values.  The conversion records, for every location
``("blocks", 0, "layers")``, the node that holds the value and the node of its key, so that
pydantic errors and :class:`~cliquegen.spec.SpecSemanticError` problems, which both name
such locations, are reported at the line and column a person has to edit::

    specs/x.yaml:7:15: error: `layers` must be at least 1, got 0

Every user error becomes a :class:`~cliquegen.errors.SpecError` carrying all the problems
found, sorted by position.  YAML-level problems (syntax, duplicate keys, tags, aliases that
expand too far) are reported before, and instead of, schema problems.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic, SpecError, code_points, printable
from .model import NAME_PATTERN, Loc, Spec, SpecSemanticError
from .network import ImageSpec

MAX_BYTES = 1 << 20  # a spec is a page of text; refuse anything near /dev/zero
MAX_DEPTH = 64  # a spec nests about 6 levels
MAX_VALUES = 100_000  # values after expanding aliases (stops "billion laughs")

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_T}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAG, _MAP_TAG, _MERGE_TAG, _VALUE_TAG = f"{_T}seq", f"{_T}map", f"{_T}merge", f"{_T}value"
_KINDS = {"int": "an integer", "float": "a number", "timestamp": "a date", "bool": "true or false"}
_TOKENS = {  # PyYAML's names of tokens, as a person would say them
    "'<block mapping start>'": "key",
    "'<block sequence start>'": "list",
    "'?'": "key",
    "'-'": "list item `-`",
    "':'": "`:`",
}
_YAML_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # what PyYAML counts as a line break

# Shown after "missing required key `x`" so the message says what to write.
_EXAMPLES = {
    "name": "name: my-cliquenet",
    "num_classes": "num_classes: 10",
    "blocks": "blocks: [{layers: 4, channels: 36}]",
    "layers": "layers: 4",
    "channels": "channels: 36",
}


def load_spec(source: str | os.PathLike[str], *, path: str | None = None) -> Spec | ImageSpec:
    """Load and validate a spec from a file or from YAML text.

    ``source`` is a file when it is a :class:`os.PathLike` (such as :class:`pathlib.Path`), or
    a ``str`` without a newline that ends in ``.yaml`` or ``.yml`` (any case); any other
    ``str`` is YAML text.  ``path`` is the name used in messages (default: the file path as
    given, or ``<string>`` for text).

    A spec with a ``network:`` list is an image-to-image network (:class:`ImageSpec`); any
    other, a classification network (:class:`Spec`).

    Raises :class:`SpecError` for every problem in the input, never another exception.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _names_a_file(source)):
        name = path if path is not None else os.fspath(source)
        text = _decode(_read_bytes(Path(source), name), name)
        looks_like_path = False
    elif isinstance(source, str):
        name, text = (path if path is not None else "<string>"), source
        looks_like_path = "\n" not in source.strip()
    else:
        raise TypeError(f"load_spec expects a path or YAML text, got {type(source).__name__}")

    tree = _Tree(name, text, looks_like_path)
    root = spec_model(tree.value)
    try:
        return root.model_validate(tree.value)
    except ValidationError as error:
        diagnostics = _explain_validation_error(error, tree, root)
    except SpecSemanticError as error:
        diagnostics = [_explain_problem(loc, message, tree, root) for loc, message in error.problems]
    raise SpecError(_sorted_unique(diagnostics))


def spec_model(value: Any) -> type[Spec] | type[ImageSpec]:
    """The model a spec's top-level mapping is validated into."""
    return ImageSpec if isinstance(value, dict) and "network" in value else Spec


def spec_files(paths: list[str]) -> list[str]:
    """``paths`` with every folder replaced by the spec files under it (``*.yaml``, ``*.yml``,
    any case; symlinked folders not followed), sorted, as paths under the folder as given."""
    files = []
    for given in paths:
        if not os.path.isdir(given):
            files.append(given)
            continue
        found = []
        for folder, subfolders, names in os.walk(given):
            subfolders.sort()
            found += [os.path.join(folder, name) for name in names if _names_a_file(name)]
        if not found:
            raise SpecError([Diagnostic(given, None, None, "no spec (*.yaml, *.yml) in this folder")])
        files += sorted(found)
    return files


def _names_a_file(text: str) -> bool:
    return "\n" not in text and text.lower().endswith((".yaml", ".yml"))


# --- bytes -> text ---------------------------------------------------------------------------


def _read_bytes(file: Path, name: str) -> bytes:
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as error:
        raise SpecError(
            [Diagnostic(name, None, None, f"cannot read the spec: {error.strerror or error}")]
        ) from None
    if len(data) > MAX_BYTES:
        raise SpecError(
            [Diagnostic(name, None, None, f"the file is larger than {MAX_BYTES} bytes; is it a spec?")]
        )
    return data


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        good = data[: error.start].decode("utf-8")
        line, column = _position(good, len(good))
        message = f"the file is not valid UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8"
        raise SpecError([Diagnostic(name, line, column, message)]) from None


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting line breaks as YAML does."""
    line, start = 1, 0
    for match in _YAML_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start + 1


# --- text -> node tree -> plain values with locations ------------------------------------------


class _Refused(Exception):
    """Input that must not be processed further (too deep, too big, recursive)."""

    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than MAX_DEPTH or too many nodes while composing."""

    depth = count = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self.count += 1
        if self.depth >= MAX_DEPTH or self.count > MAX_VALUES:
            mark = self.peek_event().start_mark
            if self.count > MAX_VALUES:
                raise _Refused(mark, f"the spec holds more than {MAX_VALUES} values; is it a spec?")
            raise _Refused(mark, f"values nest deeper than {MAX_DEPTH} levels; a spec needs only a few")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Bad:
    """Stands for a value that could not be read (its problem is already recorded)."""


_BAD = _Bad()


class _Tree:
    """A YAML document as plain values (``value``) plus the nodes behind every location."""

    def __init__(self, name: str, text: str, looks_like_path: bool):
        self.name = name
        self.nodes: dict[Loc, tuple[yaml.Node, yaml.Node | None]] = {}  # loc -> (value, key)
        self.problems: list[Diagnostic] = []
        self._count = 0
        self._stack: list[yaml.Node] = []  # collections being converted, outermost first
        self._active: set[int] = set()  # their ids, to catch recursive aliases
        self._seen: set[int] = set()  # collections converted already: a second visit is an alias
        self._merges: list[yaml.Node] = []  # `<<` values being expanded, outermost first

        if len(text) > MAX_BYTES:
            raise SpecError([Diagnostic(name, None, None, f"the text is longer than {MAX_BYTES} characters")])
        if "\0" in text:
            line, column = _position(text, text.index("\0"))
            message = "NUL character; is this a binary file rather than a YAML spec?"
            raise SpecError([Diagnostic(name, line, column, message)])
        self._loader: _Loader | None = None
        try:
            root = self._compose(text)
            if root is None:
                message = "the spec is empty; it needs at least `name`, `num_classes` and `blocks`"
                raise SpecError([Diagnostic(name, None, None, message)])
            if not isinstance(root, yaml.MappingNode):
                self._not_a_mapping(root, looks_like_path)
            self.value = self._convert(root, (), None)
        except _Refused as refused:
            raise SpecError([self._at(refused.mark, refused.message)]) from None
        finally:
            if self._loader is not None:
                self._loader.dispose()
        if self.problems:
            raise SpecError(_sorted_unique(self.problems))

    # -- composing

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            self._loader = _Loader(text)
            return self._loader.get_single_node()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            diagnostic = self._at(mark, _yaml_message(error)) if mark else self._nowhere(_yaml_message(error))
        except yaml.reader.ReaderError as error:
            line, column = _position(text, error.position)
            message = f"character U+{error.character:04X} is not allowed in YAML; remove it"
            diagnostic = Diagnostic(self.name, line, column, message)
        except yaml.YAMLError as error:
            diagnostic = self._nowhere(f"invalid YAML: {error}")
        except RecursionError:
            diagnostic = self._nowhere("values nest too deeply")
        raise SpecError([diagnostic])

    def _not_a_mapping(self, root: yaml.Node, looks_like_path: bool) -> None:
        got = "a list" if isinstance(root, yaml.SequenceNode) else f"the scalar {_quote(root.value)}"
        message = f"a spec is a mapping of keys such as `name:` and `blocks:`, but this document is {got}"
        if looks_like_path:
            message += " (to load a file, pass a pathlib.Path or a name ending in .yaml)"
        raise _Refused(root.start_mark, message)

    # -- converting

    def _convert(self, node: yaml.Node, loc: Loc, key: yaml.Node | None) -> Any:
        self._tick(node)
        if len(loc) >= MAX_DEPTH:
            raise _Refused(node.start_mark, f"aliases nest values deeper than {MAX_DEPTH} levels")
        self.nodes[loc] = (node, key)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            raise _Refused(
                node.start_mark, "this anchor contains an alias to itself; a spec cannot be recursive"
            )
        if node.tag not in (_SEQ_TAG, _MAP_TAG):
            self._problem(node.start_mark, _tag_message(node.tag))
            return _BAD
        self._stack.append(node)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self._convert(item, (*loc, i), None) for i, item in enumerate(node.value)]
            return {k: self._convert(value, (*loc, k), key) for k, key, value in self._pairs(node)}
        finally:
            self._active.discard(id(node))
            self._stack.pop()
            self._seen.add(id(node))

    def _tick(self, node: yaml.Node) -> None:
        self._count += 1
        if self._count > MAX_VALUES:
            # Blame the innermost value written out in full whose aliases (`*name`) expand it.
            for outer, inner in zip(self._stack, self._stack[1:], strict=False):
                if id(inner) in self._seen:
                    message = f"aliases (`*name`) expand this value to more than {MAX_VALUES} values"
                    raise _Refused(outer.start_mark, message)
            if self._merges:
                message = f"merges (`<<`) expand this mapping to more than {MAX_VALUES} values"
                raise _Refused(self._merges[0].start_mark, message)
            raise _Refused(node.start_mark, f"the spec holds more than {MAX_VALUES} values; is it a spec?")

    def _scalar(self, node: yaml.ScalarNode, is_key: bool = False) -> Any:
        if node.tag in (_VALUE_TAG, _MERGE_TAG):  # a plain `=` or `<<` used as a value
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._problem(node.start_mark, _tag_message(node.tag))
            return _BAD
        try:
            value = self._loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, yaml.YAMLError) as error:
            kind = node.tag[len(_T) :]
            message = f"cannot read {_quote(node.value)} as {_KINDS.get(kind, kind)}"
            if kind == "timestamp":  # e.g. "month must be in 1..12"
                message += f": {error}; quote it if it is text"
            elif "digits" in str(error):  # Python's limit on int("...")
                message += f": it has {len(node.value)} characters, far too many"
            self._problem(node.start_mark, message)
            return _BAD
        surprise = None if is_key else _yaml11_surprise(node, value)  # a key's own message says more
        if surprise:
            self._problem(node.start_mark, surprise)
            return _BAD
        return value

    def _pairs(self, node: yaml.MappingNode) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) of a mapping, `<<` merges applied, duplicates refused."""
        own: dict[str, yaml.Node] = {}
        pairs, merged = [], []
        for key_node, value_node in node.value:
            self._tick(key_node)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE_TAG:
                merged += self._merge_sources(value_node)
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in own:
                first = own[key].start_mark
                where = f"line {first.line + 1}"
                if first.line == key_node.start_mark.line:
                    where += f", column {first.column + 1}"
                self._problem(key_node.start_mark, f"duplicate key `{key}` (first at {where})")
                continue
            own[key] = key_node
            pairs.append((key, key_node, value_node))
        taken = set(own)
        inherited = []
        for key, key_node, value_node in merged:  # explicit keys win, then earlier merges
            if key not in taken:
                taken.add(key)
                inherited.append((key, key_node, value_node))
        return inherited + pairs

    def _merge_sources(self, node: yaml.Node) -> list[tuple[str, yaml.Node, yaml.Node]]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        pairs = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._problem(
                    node.start_mark, "`<<` merges a mapping or a list of mappings, e.g. `<<: *base`"
                )
                return []
            if id(source) in self._active:
                raise _Refused(source.start_mark, "this mapping merges itself through `<<`")
            self._active.add(id(source))
            self._merges.append(node)
            try:
                pairs += self._pairs(source)
            finally:
                self._active.discard(id(source))
                self._merges.pop()
        return pairs

    def _key(self, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            message = "a key must be a plain name such as `layers`, not a list or a mapping"
            self._problem(
                node.start_mark, message if node.tag in (_SEQ_TAG, _MAP_TAG) else _tag_message(node.tag)
            )
            return None
        key = self._scalar(node, is_key=True)
        if isinstance(key, str):
            return key
        if key is not _BAD:
            message = f"the key `{node.value}` is read as {_describe(key)}; keys are names such as `layers`"
            self._problem(node.start_mark, message)
        return None

    # -- locating

    def locate(self, loc: Loc) -> Loc:
        """The longest prefix of ``loc`` present in the file, skipping parts that name no node
        (pydantic adds union members such as ``"literal['x0']"`` or ``"constrained-int"``)."""
        here: Loc = ()
        for part in loc:
            if (*here, part) in self.nodes:
                here = (*here, part)
        return here

    def value_at(self, loc: Loc, message: str) -> Diagnostic:
        node, key = self.nodes[loc]
        empty = isinstance(node, yaml.ScalarNode) and node.tag == f"{_T}null" and node.value == ""
        return self._at((key if empty and key is not None else node).start_mark, message)

    def key_at(self, loc: Loc, message: str) -> Diagnostic:
        node, key = self.nodes[loc]
        return self._at((key or node).start_mark, message)

    def _at(self, mark: yaml.Mark, message: str) -> Diagnostic:
        return Diagnostic(self.name, mark.line + 1, mark.column + 1, printable(message))

    def _nowhere(self, message: str) -> Diagnostic:
        return Diagnostic(self.name, None, None, printable(message))

    def _problem(self, mark: yaml.Mark, message: str) -> None:
        self.problems.append(self._at(mark, message))


_YAML11_BOOLS = {"yes": "true", "on": "true", "no": "false", "off": "false"}


def _yaml11_surprise(node: yaml.ScalarNode, value: Any) -> str | None:
    """Why a plain scalar that YAML 1.1 (PyYAML) reads as a number or boolean must be written
    another way: YAML 1.2 readers (editors, other tools) read it differently, or a person would.
    ``010`` is 8 in YAML 1.1 and 10 in YAML 1.2, ``1:30`` is 90 (base 60); ``1_000``, ``yes``
    and ``0b100000`` are text in YAML 1.2.  Hexadecimal (``0x20``) means the same in both."""
    if node.style is not None or node.tag not in (f"{_T}int", f"{_T}float", f"{_T}bool"):
        return None
    raw = node.value
    if node.tag == f"{_T}bool":
        if raw.lower() in _YAML11_BOOLS:
            return (
                f"`{raw}` is read as {_YAML11_BOOLS[raw.lower()]} by YAML 1.1 but as text by YAML 1.2; "
                f"write {_YAML11_BOOLS[raw.lower()]}, or quote it if it is text"
            )
        return None
    shown = _yaml_text(value)
    if ":" in raw:
        return f"`{raw}` is read as {shown} (base 60, YAML 1.1); write {shown}, or quote it if it is text"
    if "_" in raw:
        return f"`{raw}` is read as {shown} by YAML 1.1 but as text by YAML 1.2; write {shown}"
    digits = raw.lstrip("+-")
    if node.tag == f"{_T}int" and digits[:2].lower() == "0b":
        return f"`{raw}` is read as {shown} (binary) by YAML 1.1 but as text by YAML 1.2; write {shown}"
    if node.tag == f"{_T}int" and re.fullmatch(r"0[0-7]+", digits):
        decimal = int(raw, 10)
        return (
            f"`{raw}` is read as {shown} (octal) by YAML 1.1 but as {decimal} by YAML 1.2; "
            f"write {shown}, or {decimal} without the leading zero"
        )
    return None


def _yaml_message(error: yaml.MarkedYAMLError) -> str:
    problem, context = error.problem or "", error.context or ""
    if "'\\t'" in problem:
        return "tab character; YAML indents with spaces only"
    if context.startswith("expected a single document"):
        return "a second YAML document; a spec file holds exactly one (remove this `---`)"
    if context.startswith("found duplicate anchor"):
        first = error.context_mark
        return f"{context.removeprefix('found ').split(';')[0]} (first at line {first.line + 1})"
    mark, first = error.problem_mark, error.context_mark
    if problem.startswith("expected <block end>, but found ") and first is not None:
        token = problem.removeprefix("expected <block end>, but found ")
        return (
            f"invalid YAML: unexpected {_TOKENS.get(token, token)} here; check the indentation of this "
            f"line against the block that starts at line {first.line + 1}, column {first.column + 1}"
        )
    message = f"invalid YAML: {problem}" if problem else f"invalid YAML: {context}"
    if problem and context and first is not None and mark is not None:
        message += f" ({context} at line {first.line + 1}, column {first.column + 1})"
    elif problem and context:
        message += f" ({context})"
    return message


def _tag_message(tag: str) -> str:
    shown = "!!" + tag[len(_T) :] if tag.startswith(_T) else tag
    plain = "plain strings, numbers, booleans, lists and mappings"
    return f"the tag `{shown}` is not allowed; a spec holds only {plain}"


# --- validation errors -> diagnostics ----------------------------------------------------------


def _explain_validation_error(
    error: ValidationError, tree: _Tree, root: type[BaseModel] = Spec
) -> list[Diagnostic]:
    diagnostics = []
    by_node: dict[Loc, list[tuple[dict[str, Any], bool]]] = {}
    items = error.errors(include_url=False)
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
        # a union member that refused the value's type (`transit: [x0, two]` is no integer) is
        # noise when another member accepted the type and found a problem inside it
        deeper = any(len(other) > len(here) and other[: len(here)] == here for other in by_node)
        if deeper:
            by_node[here] = [
                (item, from_union)
                for item, from_union in by_node[here]
                if not (from_union and item["type"].endswith("_type"))
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


def _explain_problem(loc: Loc, message: str, tree: _Tree, root: type[BaseModel] = Spec) -> Diagnostic:
    """A SpecSemanticError problem; a location absent from the file is a built-in default."""
    here = tree.locate(loc)
    if here != loc:
        keys = [part for part in loc if isinstance(part, str)]
        default = _default_of(keys, root)
        simple = isinstance(default, (int, float, str, list, tuple, type(None)))
        shown = f" {_yaml_text(default)}" if simple else ""
        message += f" (`{'.'.join(keys)}` is not set, so the built-in default{shown} applies)"
    return tree.value_at(here, message)


def _value_message(loc: Loc, item: dict[str, Any], node: yaml.Node) -> str:
    expected = _expectation(item)
    if expected is None:  # no better wording: pydantic's own, in our style
        msg = item["msg"].removeprefix("Value error, ")  # raised by our own validators
        return f"{_label(loc)}: {msg[:1].lower()}{msg[1:]}"
    message = f"{_label(loc)} must be {expected}, got {_describe(item['input'], node)}"
    return message + _hint(item, node)


def _union_message(loc: Loc, items: list[dict[str, Any]], node: yaml.Node) -> str:
    """Several members of a union refused the same value: say what any of them would accept."""
    options = []
    for item in items:
        expected = _expectation(item) or item["msg"].lower()
        member = str(item["loc"][-1])
        if item["type"] in _BOUNDS and "int" in member:
            expected = f"an integer {'of ' if expected.startswith('at ') else ''}{expected}"
        if expected not in options:
            options.append(expected)
    listed = " or ".join(options)
    hint = next((h for h in (_hint(item, node) for item in items) if h), "")
    return f"{_label(loc)} must be {listed}, got {_describe(items[0]['input'], node)}{hint}"


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
            return "lower-case letters, digits and '-', starting with a letter (e.g. `cliquenet-k36-t12`)"
        return f"text matching the pattern {ctx.get('pattern')}"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters long"
    if kind == "too_short":
        return f"a list of at least {_entries(ctx['min_length'])}"
    if kind == "too_long":
        return f"a list of at most {_entries(ctx['max_length'])}"
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


# --- what the models accept where ----------------------------------------------------------------


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
    value: Any = _BAD
    for key in keys:
        if value is _BAD:
            if model is None or key not in model.model_fields:
                return _BAD
            value = model.model_fields[key].get_default(call_default_factory=True)
            model = None
        else:
            value = getattr(value, key, _BAD)
    return value


# --- wording -------------------------------------------------------------------------------------


def _label(loc: Loc) -> str:
    keys = [part for part in loc if isinstance(part, str)]
    if not keys:
        return "each entry" if loc else "the spec"
    return f"`{keys[-1]}`" if isinstance(loc[-1], str) else f"each entry of `{keys[-1]}`"


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _describe(value: Any, node: yaml.Node | None = None) -> str:
    if isinstance(value, bool):
        shown = "true" if value else "false"
        raw = node.value if isinstance(node, yaml.ScalarNode) else shown
        return shown if raw.lower() == shown else f"`{raw}` (which YAML reads as {shown})"
    if value is None:
        return "nothing (the value is empty)" if getattr(node, "value", None) == "" else "null"
    if isinstance(value, str):
        return f"the string {_quote(value)}{code_points(value[:40])}"
    if isinstance(value, (int, float)):
        return f"{value!r}"
    if isinstance(value, list):
        return f"a list of {_entries(len(value))}" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(node, yaml.ScalarNode):
        return f"the {type(value).__name__} {node.value}"
    return f"a {type(value).__name__}"


def _quote(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_yaml_text, value)) + "]"
    return str(value)


def _sorted_unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.line or 0, d.column or 0))
