"""The YAML side of loading a spec: text -> PyYAML node tree -> plain Python values, with
the node behind every location.

The YAML is composed into a node tree with PyYAML's safe loader (no Python tags, ever) and
converted by hand into plain Python values.  The conversion records, for every location
``("blocks", 0, "layers")``, the node that holds the value and the node of its key, so that
problems naming such locations are reported at the line and column a person has to edit.
YAML-level problems (syntax, duplicate keys, tags and their values, aliases that expand too
far, the surprises of YAML 1.1) are reported here, before and instead of schema problems.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import Diagnostic, SpecError, code_points, printable
from .model import Loc

MAX_BYTES = 1 << 20  # a spec is a page of text; refuse anything near /dev/zero


MAX_DEPTH = 64  # a spec nests about 6 levels


MAX_VALUES = 100_000  # values after expanding aliases (stops "billion laughs")


_T = "tag:yaml.org,2002:"


#: What PyYAML's constructors of the plain scalar tags raise on a value they cannot read:
#: ``!!int ''`` an IndexError, ``!!bool maybe`` a KeyError, ``!!timestamp x`` an AttributeError.
_SURROGATE = re.compile("[\ud800-\udfff]")


_CONSTRUCTOR_ERRORS = (
    ValueError, OverflowError, IndexError, KeyError, AttributeError, TypeError, yaml.YAMLError,
)  # fmt: skip


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


def position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting line breaks as YAML does."""
    line, start = 1, 0
    for match in _YAML_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start + 1


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


class Bad:
    """Stands for a value that could not be read (its problem is already recorded)."""


BAD = Bad()


class YamlTree:
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
            line, column = position(text, text.index("\0"))
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
            raise SpecError(sorted_unique(self.problems))

    # -- composing

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            self._loader = _Loader(text)
            return self._loader.get_single_node()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            diagnostic = self._at(mark, _yaml_message(error)) if mark else self._nowhere(_yaml_message(error))
        except yaml.reader.ReaderError as error:
            line, column = position(text, error.position)
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
            return BAD
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
            return BAD
        try:
            value = self._loader.construct_object(node, deep=True)
        except _CONSTRUCTOR_ERRORS as error:
            kind = node.tag[len(_T) :]
            message = f"cannot read {_quote(node.value)} as {_KINDS.get(kind, kind)}"
            if kind == "timestamp" and isinstance(error, ValueError):  # "month must be in 1..12"
                message += f": {error}; quote it if it is text"
            elif kind == "timestamp":  # no date at all
                message += " (such as 2001-12-14); quote it if it is text"
            elif "digits" in str(error):  # Python's limit on int("...")
                message += f": it has {len(node.value)} characters, far too many"
            self._problem(node.start_mark, message)
            return BAD
        surprise = None if is_key else _yaml11_surprise(node, value)  # a key's own message says more
        if surprise:
            self._problem(node.start_mark, surprise)
            return BAD
        if isinstance(value, str) and _SURROGATE.search(value):
            return self._paired(node, value)
        return value

    def _paired(self, node: yaml.ScalarNode, value: str) -> Any:
        """Text whose escapes spell UTF-16 surrogates (JSON writes 😀 as ``"\\ud83d\\ude00"``),
        each pair joined into its character; a surrogate without its pair is refused."""
        try:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError as error:
            unit = int.from_bytes(error.object[error.start : error.start + 2], "little")
            self._problem(
                node.start_mark,
                f"the escape \\u{unit:04x} is half of a UTF-16 surrogate pair without its other half; "
                "write the character itself",
            )
            return BAD

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
        if key is not BAD:
            message = f"the key `{node.value}` is read as {describe(key)}; keys are names such as `layers`"
            self._problem(node.start_mark, message)
        return None

    # -- locating

    def locate(self, loc: Loc) -> Loc:
        return longest_prefix(self.nodes, loc)

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


def longest_prefix(nodes: Mapping[Loc, object], loc: Loc) -> Loc:
    """The longest prefix of ``loc`` that names a node, skipping parts that name none
    (pydantic adds union members such as ``"literal['x0']"`` or ``"constrained-int"``)."""
    here: Loc = ()
    for part in loc:
        if (*here, part) in nodes:
            here = (*here, part)
    return here


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
    shown = yaml_text(value)
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


def entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def describe(value: Any, node: yaml.Node | None = None) -> str:
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
        return f"a list of {entries(len(value))}" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(node, yaml.ScalarNode):
        return f"the {type(value).__name__} {node.value}"
    return f"a {type(value).__name__}"


def _quote(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(yaml_text, value)) + "]"
    return str(value)


def sorted_unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.line or 0, d.column or 0))
