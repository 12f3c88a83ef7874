"""Python text toolkit of the source emitter: literals, docstrings, comments and statements
laid out in ``ruff format`` style.

The statements come out already in ``ruff format`` style (line length :data:`LINE_LENGTH`), so
generated files pass ``ruff format --check`` unchanged.  The layout is our own rather than
ruff's (which lays statements out identically, as a test checks) because ruff is no runtime
dependency of cliquegen, and a formatter's output changes with its version: the same spec must
give the same bytes wherever it is built.  Comments, docstrings and long string literals, which
ruff does not wrap, are wrapped here too.  User text (name, description, spec path) reaches a
file only through :func:`pyrepr` (a string literal) or :func:`docstring` (escaped docstring
text).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from ..compiler.ir import is_identifier, sanitize_identifier

LINE_LENGTH = 110
INDENT = "    "
BODY_WIDTH = LINE_LENGTH - 2 * len(INDENT)  # statements sit in method bodies


def text_width(text: str) -> int:
    """Columns ``text`` takes in an editor (and for ruff's line length): wide East Asian
    characters and emoji count 2, combining marks 0."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


# --- user text -> Python text ---------------------------------------------------------------


def _escape(text: str, quote: str, quote_at: Any) -> str:
    """Backslash-escape ``\\``, every non-printable character, and ``quote`` where
    ``quote_at(index)`` says so.  The result holds no raw whitespace but spaces."""
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == quote and quote_at(index):
            out.append("\\" + quote)
        elif not char.isprintable():
            out.append(repr(char)[1:-1])  # \n, \t, \x0b, \u2028, ...
        else:
            out.append(char)
    return "".join(out)


def _string_literal(text: str) -> str:
    """A string literal for ``text`` with the quotes ``ruff format`` prefers."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + _escape(text, quote, lambda index: True) + quote


def pyrepr(value: Any, width: int | None = None) -> str:
    """A Python literal for ``value``; a string longer than ``width`` becomes a parenthesized
    concatenation of pieces that each fit (split after spaces where possible)."""
    if not isinstance(value, str):
        if isinstance(value, (bool, int, float, type(None))) or (
            isinstance(value, tuple) and all(isinstance(v, int) for v in value)
        ):
            return repr(value)
        raise TypeError(f"pyrepr: no literal for {type(value).__name__}")
    literal = _string_literal(value)
    if width is None or text_width(literal) <= width:
        return literal
    if len(INDENT) + text_width(literal) <= LINE_LENGTH:
        return f"(\n{INDENT}{literal}\n)"
    room = LINE_LENGTH - len(INDENT)  # for each piece, quotes included
    pieces: list[str] = []
    piece = ""
    words = value.split(" ")
    for index, word in enumerate(words):
        word += " " if index + 1 < len(words) else ""  # spaces stay at the end of a piece
        if text_width(_string_literal(piece + word)) <= room:
            piece += word
            continue
        if piece:
            pieces.append(piece)
            piece = ""
        for char in word:  # a word longer than a line is cut
            if piece and text_width(_string_literal(piece + char)) > room:
                pieces.append(piece)
                piece = ""
            piece += char
    pieces.append(piece)
    body = "".join(f"\n{INDENT}{_string_literal(p)}" for p in pieces if p)
    return f"({body}\n)"


def docstring(text: str) -> str:
    """``text`` as the inside of a ``\"\"\"`` docstring: backslashes, non-printable characters
    (newlines included) and any ``"`` that could end or touch the closing quotes are escaped."""
    return _escape(text, '"', lambda index: index + 1 == len(text) or text[index + 1] == '"')


def doc_paragraph(text: str, indent: str, width: int = LINE_LENGTH) -> list[str]:
    """``text`` cut at spaces into lines that fit a docstring at ``indent`` once escaped
    (escape each line with :func:`docstring`); a word longer than a line stays whole."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if not word:
            continue
        longer = f"{line} {word}" if line else word
        if line and len(indent) + text_width(docstring(longer)) > width:
            lines.append(line)
            line = word
        else:
            line = longer
    return [*lines, line] if line else lines


def ident(name: str) -> str:
    """An identifier for the generated code; Program names are already identifiers, so a
    change here is a compiler bug, not something to paper over."""
    safe = sanitize_identifier(name)
    if safe != name or not is_identifier(safe):
        raise AssertionError(f"{name!r} is not a safe identifier")
    return safe


# --- statements in ruff format style --------------------------------------------------------


@dataclass(frozen=True)
class Seq:
    """A bracketed argument, ``open`` including any ``keyword=`` prefix: split when too long."""

    open: str
    items: tuple[Any, ...]
    close: str

    def flat(self) -> str:
        return f"{self.open}{', '.join(_flat(item) for item in self.items)}{self.close}"


def _flat(item: Any) -> str:
    return item.flat() if isinstance(item, Seq) else item


def format_call(indent: int, seq: Seq, width: int = LINE_LENGTH) -> list[str]:
    """Lines of ``seq`` (``x = f(`` ... ``)``) as ruff format lays them out at ``indent``:
    on one line; else the arguments on one line of their own; else one per line with a
    trailing comma, splitting any that still does not fit."""
    pad = " " * indent
    flat = seq.flat()
    if len(pad) + len(flat) <= width:
        return [pad + flat]
    inner_pad = pad + INDENT
    body = ", ".join(_flat(item) for item in seq.items)
    if len(inner_pad) + len(body) <= width:
        return [pad + seq.open, inner_pad + body, pad + seq.close]
    lines = [pad + seq.open]
    for item in seq.items:
        line = _flat(item) + ","
        if len(inner_pad) + len(line) <= width or not isinstance(item, Seq):
            lines.append(inner_pad + line)
        else:
            lines += format_call(indent + len(INDENT), Seq(item.open, item.items, item.close + ","), width)
    lines.append(pad + seq.close)
    return lines


def wrap_text(text: str, width: int, separator: str) -> list[str]:
    """Program text (never user text) cut after ``separator`` into lines of at most ``width``
    (the first) and ``width - 2`` (the others, which the caller indents)."""
    lines, line = [], ""
    for term in text.split(separator):
        room = width - 2 * bool(lines) - len(separator.rstrip())  # the separator ending a line
        if line and len(line) + len(separator) + len(term) > room:
            lines.append(line + separator.rstrip())
            line = term
        else:
            line = f"{line}{separator}{term}" if line else term
    return [*lines, line]


def wrap_comment(text: str, width: int = BODY_WIDTH, separator: str = " + ") -> list[str]:
    """A comment of program text, continued on ``#   `` lines when too long."""
    first, *rest = wrap_text(text, width - 2, separator)
    return [f"# {first}", *(f"#   {line}" for line in rest)]


def strip_blank(lines: list[str]) -> list[str]:
    """``lines`` without the blank lines they begin with."""
    while lines and not lines[0]:
        lines = lines[1:]
    return lines
