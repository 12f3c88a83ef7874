"""Deprecated: this module moved to cliquegen.draw; its names still work here for one release, with a
DeprecationWarning."""

import sys
import types
from typing import Any

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.render",
    {
        "Drawing": "cliquegen.draw.render",
        "EDGE_LIMIT": "cliquegen.draw.render",
        "FORMATS": "cliquegen.draw.render",
        "LABEL_LIMIT": "cliquegen.draw.render",
        "MISSING_DOT": "cliquegen.draw.render",
        "OUTPUT_EDGE": "cliquegen.draw.render",
        "OUTPUT_FILL": "cliquegen.draw.render",
        "PALETTE": "cliquegen.draw.render",
        "ROW_LIMIT": "cliquegen.draw.render",
        "SUFFIXES": "cliquegen.draw.render",
        "VIEWS": "cliquegen.draw.render",
        "X0_COLOUR": "cliquegen.draw.render",
        "colour": "cliquegen.draw.render",
        "draw": "cliquegen.draw.render",
        "output_format": "cliquegen.draw.render",
        "render": "cliquegen.draw.render",
        "tensor_text": "cliquegen.draw.render",
        "weight_text": "cliquegen.draw.render",
    },
)


# ``cliquegen.render`` is also the package's drawing function: importing this module must not
# take its place, so the module itself can be called like it.
class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .draw.render import render

        return render(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
