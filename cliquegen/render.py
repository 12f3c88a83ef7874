"""Deprecated: this module moved to cliquegen.draw; its names still work here for one release, with a
DeprecationWarning."""

import sys
import types
from typing import Any

from ._deprecated import forward
from .draw import views as _views

__getattr__ = forward(
    "cliquegen.render",
    {
        "Drawing": "cliquegen.draw",
        "EDGE_LIMIT": "cliquegen.draw",
        "FORMATS": "cliquegen.draw",
        "LABEL_LIMIT": "cliquegen.draw",
        "MISSING_DOT": "cliquegen.draw",
        "OUTPUT_EDGE": "cliquegen.draw",
        "OUTPUT_FILL": "cliquegen.draw",
        "PALETTE": "cliquegen.draw",
        "ROW_LIMIT": "cliquegen.draw",
        "SUFFIXES": "cliquegen.draw",
        "VIEWS": "cliquegen.draw",
        "X0_COLOUR": "cliquegen.draw",
        "colour": "cliquegen.draw",
        "draw": "cliquegen.draw",
        "output_format": "cliquegen.draw",
        "render": "cliquegen.draw",
        "tensor_text": "cliquegen.draw",
        "weight_text": "cliquegen.draw",
    },
)


# ``cliquegen.render`` is also the package's drawing function: importing this module must not
# take its place, so the module itself can be called like it.
class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _views.render(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
