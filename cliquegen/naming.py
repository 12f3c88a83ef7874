"""Deprecated: this module moved to cliquegen.compiler.naming; its names still work here for one release,
with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.naming",
    {
        "class_name": "cliquegen.compiler.naming",
        "roman": "cliquegen.compiler.naming",
    },
)
