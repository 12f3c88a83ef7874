"""cliquegen models as timm models.

Once timm is imported (before or after cliquegen: an import hook waits for it, so the command
line never loads timm), every shipped spec is a timm model named like its spec with ``_`` for
``-`` (``cliquenet_s3``), with a ``pretrained_cfg`` that states its input size, normalisation,
first convolution, classifier, license and paper.  :func:`register_timm_model` registers a
user's spec the same way.

Every model built through timm records its spec's text among timm's model arguments, so
``timm.models.save_for_hf`` writes a ``config.json`` that rebuilds it: a shipped spec under its
own name, a user's spec under the generic ``cliquegen_spec``, which builds whatever spec text it
is given.  ``timm.create_model("local-dir:DIR", pretrained=True)`` then needs only
``import cliquegen`` and the folder.  ``cliquegen_spec`` is left out of ``timm.list_models()``,
since it cannot be built without a spec.  ``features_only=True`` wraps the model in timm's
``FeatureGetterNet``, which calls the model's ``forward_intermediates``: one map per block.

The models follow timm's conventions (``cliquegen.emit._interface.TimmModel``): they take
``device=``, ``dtype=`` and ``global_pool=``, an unknown argument is a ``TypeError``, and
``pretrained_cfg["pool_size"]`` is the size of ``forward_features``' unpooled map.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from ..compiler.lower import compile_spec
from ..emit.fx import head_branches
from ..errors import CliqueGenError, UsageError
from ..spec.model import Spec
from ..spec.network import ImageSpec

#: The timm name whose entry point builds the spec text it is given (``spec=...``).
GENERIC = "cliquegen_spec"
PAPER = "Convolutional Neural Networks with Alternately Updated Clique"
PAPER_ID = "arXiv:1802.10419"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

#: timm reads each registered model's pretrained_cfg from its module's ``default_cfgs``.
default_cfgs: dict[str, dict[str, Any]] = {}
#: timm name -> spec text, for the names registered here.
_specs: dict[str, str] = {}


def timm_name(spec: Spec) -> str:
    """``cliquenet-k36-t12`` -> ``cliquenet_k36_t12``."""
    return spec.name.replace("-", "_")


def pretrained_cfg(spec: Spec) -> dict[str, Any]:
    """What timm's data pipeline and weight loading read.  cliquegen ships no trained weights;
    the normalisation is that of the data the spec is for: ImageNet's for 3-channel inputs of
    64 pixels and more, CIFAR-10's for 3-channel 32x32, 0.5 and 0.5 per channel otherwise."""
    channels, height, width = spec.input.channels, spec.input.height, spec.input.width
    if channels == 3 and min(height, width) >= 64:
        mean, std, crop = IMAGENET_MEAN, IMAGENET_STD, 0.875
    elif channels == 3 and (height, width) == (32, 32):
        mean, std, crop = CIFAR10_MEAN, CIFAR10_STD, 1.0
    else:
        mean, std, crop = (0.5,) * channels, (0.5,) * channels, 1.0
    program = compile_spec(spec).program
    pool_size = (0, 0)  # forward_features' map: the largest size that divides every head branch's
    for name in head_branches(program):
        _, rows, columns = program.values[name].shape
        pool_size = (math.gcd(pool_size[0], rows), math.gcd(pool_size[1], columns))
    return {
        "input_size": (channels, height, width),
        "pool_size": pool_size,
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": crop,
        "mean": mean,
        "std": std,
        "num_classes": spec.num_classes,
        "first_conv": "stem.conv",
        "classifier": "classifier",
        "license": "mit",
        "description": spec.description or None,
        "paper_name": PAPER,
        "paper_ids": PAPER_ID,
    }


def _create(name: str, text: str | None, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model the timm way (``build_model_with_cfg``): timm's keywords
    (``num_classes``, ``in_chans``, ``drop_rate``, ``global_pool``, ``device``, ``dtype``) and
    cliquegen's overrides (``defaults={"dropout": 0.1}``, ``memory_efficient=True``,
    ``emit="source"``) both apply; an unknown one is a ``TypeError``."""
    from timm.models import build_model_with_cfg

    from ..models import create_model
    from ..spec.loader import load_spec_text

    text = kwargs.pop("spec", None) or text  # a saved config's own spec text comes first
    if text is None:
        raise UsageError(f"timm model {name!r} needs spec=<the spec's YAML text>")
    spec = load_spec_text(text, path=f"<{name} spec>")  # text only: a config never names a file
    feature_cfg = {"feature_cls": "getter", "out_indices": tuple(range(len(spec.blocks)))}
    model = build_model_with_cfg(
        lambda **overrides: create_model(spec, **overrides),
        name,
        pretrained,
        feature_cfg=feature_cfg,
        **kwargs,
    )
    model._model_args = {"spec": text}  # timm adds the call's own arguments to these
    if name not in _shipped_names():  # a user's spec: rebuilt by the generic entry point
        model.pretrained_cfg = {**model.pretrained_cfg, "architecture": GENERIC}
        model.default_cfg = model.pretrained_cfg
    return model


def _entrypoint(name: str, text: str | None) -> Any:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _create(name, text, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"The cliquegen model {name} (timm's create_model keywords and spec overrides)."
    return entrypoint


def _register(name: str, text: str | None, cfg: dict[str, Any]) -> str:
    from timm.models import is_model, register_model

    if is_model(name) and name not in _specs and name != GENERIC:
        raise UsageError(f"timm already has a model named {name!r}; give the spec another name")
    default_cfgs[name] = cfg
    if text is not None:
        _specs[name] = text
    with warnings.catch_warnings():  # registering one of our names again replaces it
        warnings.simplefilter("ignore")
        register_model(_entrypoint(name, text))
    if name == GENERIC:
        _unlisted(name)
    return name


def _unlisted(name: str) -> None:
    """Leave a registered name out of ``timm.list_models()`` (which loops over every name it
    lists, building each, in timm's tests, model browsers and benchmarks); ``create_model`` still
    finds it.  timm leaves out the names in its registry's ``_deprecated_models`` so; a timm
    without that table lists the name."""
    from timm.models import _registry

    hidden = getattr(_registry, "_deprecated_models", None)
    if isinstance(hidden, dict):
        hidden.setdefault(name, None)


def _shipped_names() -> set[str]:
    from ..spec.shipped import shipped_specs

    return {name.replace("-", "_") for name in shipped_specs()}


def register_timm_model(spec_or_path: str | os.PathLike | Spec) -> str:
    """Register a spec (a Spec, a spec file, or a shipped name) as a timm model; return its
    timm name (``my-net`` -> ``my_net``) for ``timm.create_model``."""
    from ..spec.shipped import resolve_spec, shipped_specs

    _import_timm()
    spec = resolve_spec(spec_or_path)
    if isinstance(spec, ImageSpec):
        raise UsageError(f"spec {spec.name!r} is an image-to-image network; timm's models are classifiers")
    if isinstance(spec_or_path, Spec):
        text = spec.model_dump_json(exclude_unset=True)
    else:
        given = os.fspath(spec_or_path)
        path = shipped_specs().get(given, Path(given))
        text = path.read_text(encoding="utf-8")
    return _register(timm_name(spec), text, pretrained_cfg(spec))


def _import_timm() -> None:
    """Import timm, or say why it cannot be used."""
    try:
        import timm  # noqa: F401
    except Exception as error:  # ImportError, or a broken dependency (torchvision) raising anything
        raise UsageError(
            f"timm cannot be imported ({type(error).__name__}: {error}); "
            "install it with: pip install 'cliquegen[timm]'"
        ) from None


def register_shipped() -> list[str]:
    """Register every shipped spec and the generic entry point; return the timm names."""
    from ..spec.loader import load_spec
    from ..spec.shipped import shipped_specs

    _register(GENERIC, None, {"num_classes": 1000, "first_conv": "stem.conv", "classifier": "classifier",
                              "license": "mit", "paper_name": PAPER, "paper_ids": PAPER_ID})  # fmt: skip
    names = []
    for path in shipped_specs().values():
        text = path.read_text(encoding="utf-8")
        spec = load_spec(text, path=str(path))
        if isinstance(spec, ImageSpec):  # timm's models are classifiers
            continue
        names.append(_register(timm_name(spec), text, pretrained_cfg(spec)))
    return names


def _register_shipped_quietly() -> None:
    """Called as timm finishes importing: a failure here must not break the user's import."""
    try:
        register_shipped()
    except (CliqueGenError, OSError, ImportError) as error:
        warnings.warn(f"cliquegen: its models are not registered with timm: {error}", stacklevel=2)


class _WhenTimmLoads:
    """An import hook that lets timm's own finder and loader do the work, then registers
    cliquegen's models once timm's package has run; it leaves ``sys.meta_path`` then."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "timm":
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            run(module)
            _register_shipped_quietly()

        loader.exec_module = exec_module  # this loader object serves the timm package only
        return spec


def register_when_timm_loads() -> None:
    """Register now if timm is imported already, else as soon as it is (never imports it)."""
    if "timm" in sys.modules:
        _register_shipped_quietly()
    elif importlib.util.find_spec("timm") is not None and not any(
        isinstance(finder, _WhenTimmLoads) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _WhenTimmLoads())
