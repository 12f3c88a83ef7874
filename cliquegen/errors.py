"""Errors that users can fix: each carries one or more located diagnostics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file, printed as ``PATH:LINE:COL: error: MESSAGE`` (1-based)."""

    path: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: error: {self.message}"


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
