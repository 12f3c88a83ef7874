"""Deprecated: this module moved to cliquegen.spec.loader; its names still work here for one release, with a
DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.loader",
    {
        "MAX_BYTES": "cliquegen.spec.loader",
        "MAX_DEPTH": "cliquegen.spec.loader",
        "MAX_VALUES": "cliquegen.spec.loader",
        "load_spec": "cliquegen.spec.loader",
        "spec_files": "cliquegen.spec.loader",
    },
)
