"""Deprecated: this module moved to cliquegen.spec.schema; its names still work here for one release, with a
DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.schema",
    {
        "DRAFT_07": "cliquegen.spec.schema",
        "spec_schema": "cliquegen.spec.schema",
    },
)
