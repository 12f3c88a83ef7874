"""Names a spec gives the code and pictures built from it, shared by the emitters, the builder,
the drawings and the figures."""

from __future__ import annotations

from ..spec.model import Spec
from .ir import sanitize_identifier


def class_name(spec: Spec) -> str:
    """``cliquenet-k36-t12`` -> ``CliquenetK36T12``."""
    return sanitize_identifier("".join(part.capitalize() for part in spec.name.split("-")))


def roman(n: int) -> str:
    """Stage numbers as the paper writes them: 1 -> I, 2 -> II, 4 -> IV, 12 -> XII."""
    out = ""
    for value, letters in ((50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out += letters * count
    return out
