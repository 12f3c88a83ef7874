"""Names a spec gives the code built from it, shared by the emitters and the builder."""

from __future__ import annotations

from .ir import sanitize_identifier
from .spec import Spec


def class_name(spec: Spec) -> str:
    """``cliquenet-k36-t12`` -> ``CliquenetK36T12``."""
    return sanitize_identifier("".join(part.capitalize() for part in spec.name.split("-")))
