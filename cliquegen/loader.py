"""Deprecated: this module moved to cliquegen.spec.loader (its limits to cliquegen.spec.yaml_tree);
its names still work here for one release, with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.loader",
    {
        "MAX_BYTES": "cliquegen.spec.yaml_tree",
        "MAX_DEPTH": "cliquegen.spec.yaml_tree",
        "MAX_VALUES": "cliquegen.spec.yaml_tree",
        "load_spec": "cliquegen.spec.loader",
        "spec_files": "cliquegen.spec.loader",
    },
)
