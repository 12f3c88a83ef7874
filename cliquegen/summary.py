"""Deprecated: this module moved to cliquegen.compiler.summary; its names still work here for one release,
with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.summary",
    {
        "PartSummary": "cliquegen.compiler.summary",
        "Summary": "cliquegen.compiler.summary",
        "parameter_count": "cliquegen.compiler.summary",
        "summarize": "cliquegen.compiler.summary",
    },
)
