"""Deprecated: this module moved to cliquegen.compiler.lower; its names still work here for one release, with
a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.lower",
    {
        "CHANNELS_LAST_FROM": "cliquegen.compiler.lower",
        "Compiled": "cliquegen.compiler.lower",
        "block_input_channels": "cliquegen.compiler.lower",
        "build_update_graph": "cliquegen.compiler.lower",
        "compile_spec": "cliquegen.compiler.lower",
        "schedule": "cliquegen.compiler.lower",
        "value_name": "cliquegen.compiler.lower",
    },
)
