"""The package version, in one place (the generated source and the CLI show it)."""

__version__ = "0.1.0"
