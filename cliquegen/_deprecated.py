"""Module paths of the flat layout, kept for one release: each name forwards to its new home
and warns (``DeprecationWarning``) when it is used."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward(old: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that finds each name of ``homes`` in its new module."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} has moved to {home}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)

    __getattr__.moved = dict(homes)  # what the old path still offers, and where it lives now
    return __getattr__
