"""Names a spec gives the code and pictures built from it, shared by the emitters, the builder,
the drawings and the figures."""

from __future__ import annotations

from ..spec.model import Spec
from .ir import sanitize_identifier

#: Words a name may begin with, written as their papers write them.
FAMILY_WORDS = {"cliquenet": "CliqueNet", "densenet": "DenseNet"}


def class_name(spec: Spec) -> str:
    """The spec's name in CamelCase: ``cliquenet-k36-t12`` -> ``CliqueNetK36T12``,
    ``densenet-121`` -> ``DenseNet121``, ``my-net`` -> ``MyNet``.  A word that begins with a
    family word keeps its capitals (``densenet121`` -> ``DenseNet121``)."""
    words = []
    for word in spec.name.split("-"):
        family = next((family for family in FAMILY_WORDS if word.startswith(family)), None)
        if family is None:
            words.append(word.capitalize())
        else:
            words.append(FAMILY_WORDS[family] + word[len(family) :].capitalize())
    return sanitize_identifier("".join(words))


def roman(n: int) -> str:
    """Stage numbers as the paper writes them: 1 -> I, 2 -> II, 4 -> IV, 12 -> XII."""
    out = ""
    for value, letters in ((50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out += letters * count
    return out
