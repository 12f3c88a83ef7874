"""The ``cliquegen`` command line: the parser, one function per command, and the entry point."""

from .main import main

__all__ = ["main"]
