"""Strict parsers for the numeric options of every command.

``argparse``'s ``type=int`` and ``type=float`` take more than a person means: ``float`` reads
``nan``, ``inf`` and ``1_0``; ``int`` reads ``٣`` (an Arabic-Indic three) and numbers of
thousands of digits.  The parsers here accept plain ASCII numbers inside a range, so a value
like ``--repeats 0`` or ``--lr nan`` is an exit-2 usage error before any work starts::

    sub.add_argument("--repeats", type=count(), default=5)
    sub.add_argument("--lr", type=real(above=0, at_most=10), default=0.1)
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

_INTEGER = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")

#: Counts past this are typing mistakes, not requests (no option counts beyond a billion).
MAX_COUNT = 10**9


def integer(*, at_least: int | None = None, at_most: int | None = None) -> Callable[[str], int]:
    """An ``argparse`` type: a plain integer within ``[at_least, at_most]``."""

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {_shown(text)}")
        digits = text.strip().lstrip("+-").lstrip("0")
        if len(digits) > 18:  # far outside any range; int() of thousands of digits is slow
            raise argparse.ArgumentTypeError(f"{_shown(text)} is far too large")
        value = int(text)
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least}, got {value}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:,}, got {value:,}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


def count(*, at_least: int = 1, at_most: int = MAX_COUNT) -> Callable[[str], int]:
    """An ``argparse`` type for how many of something: an integer from 1 (or ``at_least``)."""
    return integer(at_least=at_least, at_most=at_most)


def real(
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> Callable[[str], float]:
    """An ``argparse`` type: a finite decimal number, greater than ``above`` and within
    ``[at_least, at_most]`` when given.  ``nan``, ``inf`` and ``1_0`` are refused."""

    def parse(text: str) -> float:
        if not _REAL.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected a finite number such as 0.1, got {_shown(text)}")
        value = float(text)
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {_shown(text)}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {value:g}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least:g}, got {value:g}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:g}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def _shown(text: str) -> str:
    """``text`` quoted with control and non-ASCII characters escaped, cut to a readable length."""
    shown = ascii(text)
    return shown if len(shown) <= 40 else shown[:36] + "...'"
