"""Deprecated: this module moved to cliquegen.compiler.ir; its names still work here for one release, with a
DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.ir",
    {
        "Group": "cliquegen.compiler.ir",
        "MODULE_KINDS": "cliquegen.compiler.ir",
        "ModuleDecl": "cliquegen.compiler.ir",
        "NodeId": "cliquegen.compiler.ir",
        "OP_KINDS": "cliquegen.compiler.ir",
        "Op": "cliquegen.compiler.ir",
        "Program": "cliquegen.compiler.ir",
        "equation": "cliquegen.compiler.ir",
        "is_identifier": "cliquegen.compiler.ir",
        "node_label": "cliquegen.compiler.ir",
        "sanitize_identifier": "cliquegen.compiler.ir",
        "weight_label": "cliquegen.compiler.ir",
    },
)
