"""Emitters: each turns the same Program into something runnable or readable."""

from .build import build_source_model, generate_source

__all__ = ["build_source_model", "generate_source"]
