"""Deprecated: this module moved to cliquegen.interop.export; its names still work here for one release, with
a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.export",
    {
        "EXAMPLE_BATCH": "cliquegen.interop.export",
        "FORMATS": "cliquegen.interop.export",
        "INPUT_NAME": "cliquegen.interop.export",
        "METADATA_FILE": "cliquegen.interop.export",
        "NOTES": "cliquegen.interop.export",
        "OUTPUT_NAME": "cliquegen.interop.export",
        "example_input": "cliquegen.interop.export",
        "export_model": "cliquegen.interop.export",
        "load_model": "cliquegen.interop.export",
        "read_metadata": "cliquegen.interop.export",
    },
)
