"""A stand-in ``torchvision`` for importing timm where torchvision cannot be imported.

timm imports torchvision at import time (``torchvision.ops.misc.FrozenBatchNorm2d``,
``torchvision.transforms``, ``torchvision.datasets`` ...), but the model code the tests
exercise (``create_model``, ``features_only``, ``save_for_hf``, ``local-dir:`` loading) never
uses it.  Where the real torchvision is installed and imports, it is used.  Where it is absent,
or its wheel cannot load beside this machine's CPU torch (it links libtorch_cuda.so), the tests
put these modules into ``sys.modules`` first: every name timm looks up exists, as a class whose
instantiation raises, so anything that really used torchvision would fail loudly.
"""

from __future__ import annotations

import importlib
import sys
import types

MODULES = (
    "torchvision",
    "torchvision.datasets",
    "torchvision.models",
    "torchvision.models.feature_extraction",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


def _refuse(self, *args, **kwargs):
    raise RuntimeError(f"{type(self).__qualname__} belongs to the torchvision stand-in of the tests")


class _StandInType(type):
    """Attributes of a stand-in class are stand-in classes (``InterpolationMode.BILINEAR``)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{cls.__qualname__}.{name}")


_made: dict[str, type] = {}


def _stand_in(qualname: str) -> type:
    if qualname not in _made:
        name = qualname.rsplit(".", 1)[-1]
        _made[qualname] = _StandInType(name, (), {"__init__": _refuse, "__qualname__": qualname})
    return _made[qualname]


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{self.__name__}.{name}")


def real_torchvision_imports() -> bool:
    try:
        importlib.import_module("torchvision")
    except Exception:  # absent, or a wheel that cannot load here (OSError, RuntimeError, ...)
        for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
            del sys.modules[name]  # what a failed import left behind
        return False
    return True


def install() -> list[str]:
    """Put the stand-in modules into sys.modules (unless the real torchvision imports); return
    the names installed, for :func:`remove`."""
    if real_torchvision_imports():
        return []
    for name in MODULES:
        module = _StandInModule(name)
        module.__path__ = []  # a package, so that submodule imports resolve through sys.modules
        sys.modules[name] = module
    return list(MODULES)


def remove(names: list[str]) -> None:
    """Take the stand-in modules out of sys.modules again (timm keeps what it looked up)."""
    for name in names:
        sys.modules.pop(name, None)
