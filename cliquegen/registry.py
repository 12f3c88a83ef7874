"""Deprecated: this module moved to cliquegen.spec.shipped and cliquegen.models; its names still work here
for one release, with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.registry",
    {
        "apply_overrides": "cliquegen.spec.shipped",
        "create_model": "cliquegen.models",
        "family": "cliquegen.spec.shipped",
        "list_models": "cliquegen.spec.shipped",
        "resolve_spec": "cliquegen.spec.shipped",
        "shipped_specs": "cliquegen.spec.shipped",
        "specs_dir": "cliquegen.spec.shipped",
    },
)
