"""Errors that users can fix: each carries one or more located diagnostics."""

from __future__ import annotations

import errno
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file, printed as ``PATH:LINE:COL: error: MESSAGE`` (1-based)."""

    path: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = printable(self.path)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: error: {printable(self.message)}"


class CliqueGenError(Exception):
    """Base class of the errors caused by user input; the CLI exits with status 2 on them."""


class SpecError(CliqueGenError):
    """A spec that cannot be loaded: YAML, type or consistency problems, each located."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(map(str, self.diagnostics)))


class ResourceError(SpecError):
    """A valid spec that asks for more than the limits (parameters, memory, graph size);
    printed as ``PATH: error: spec needs ...``.  ``--force`` builds it anyway."""


class UsageError(CliqueGenError):
    """A bad command-line request (unknown model name, missing tool, ...)."""


class UnknownArgumentError(UsageError, TypeError):
    """A keyword the model builder does not know: a ``TypeError`` to Python code (as any
    unknown keyword argument is, and as timm expects of a model), a ``UsageError`` to the CLI."""


def import_extra(module: str, extra: str, purpose: str):
    """Import an optional dependency, or say which extra of cliquegen provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"{purpose} needs the Python package `{module}`, which is not installed; "
            f"install it with: pip install 'cliquegen[{extra}]'"
        ) from None


class WeightsError(CliqueGenError):
    """A weights file or state_dict that cannot be read or does not fit the spec."""


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\u202e``), so user
    text (keys, values, file names) cannot drive the terminal an error is printed on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else repr(c)[1:-1] for c in text)


def code_points(text: str) -> str:
    """A note naming the non-ASCII characters of ``text``, so two names that look the same are
    told apart: ``layеrs`` -> `` (е is U+0435 CYRILLIC SMALL LETTER IE)``; "" for ASCII text."""
    odd = list(dict.fromkeys(c for c in text if not c.isascii()))
    if not odd:
        return ""
    names = [f"{printable(c)} is U+{ord(c):04X} {unicodedata.name(c, 'without a name')}" for c in odd[:3]]
    more = f"; and {len(odd) - 3} more" if len(odd) > 3 else ""
    return f" ({'; '.join(names)}{more})"


def os_error_message(error: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, why."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.EPIPE:
        return "standard output was closed before everything was written (broken pipe)"
    files = [f for f in (error.filename, error.filename2) if f is not None]
    if files:
        return f"{' -> '.join(printable(str(f)) for f in files)}: {reason}"
    return f"cannot write the output: {reason}"


def dims(shape) -> str:
    """A shape as messages and drawings write it: ``3x32x32``."""
    return "x".join(str(int(n)) for n in shape)
