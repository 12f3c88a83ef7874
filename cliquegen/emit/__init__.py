"""Emitters: each turns the same Program into something runnable or readable."""

from typing import TYPE_CHECKING

from .._lazy import lazy

if TYPE_CHECKING:
    from .build import build_source_model, generate_source

# the source emitter imports jinja2: it loads when one of its names is first used
__getattr__, __dir__ = lazy(__name__, {"build_source_model": ".build", "generate_source": ".build"})

__all__ = ["build_source_model", "generate_source"]
