"""The one build path from a Spec to a model (``build_fx``, ``create_model``), shared by the API,
the timm factory and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from .compiler.lower import compile_spec
from .compiler.naming import class_name
from .emit.build import build_source_model
from .emit.fx import CliqueNetGraphModule, emit_fx
from .emit.fx_image import ImageGraphModule, emit_image_fx
from .errors import UsageError
from .spec.model import Spec
from .spec.network import ImageSpec
from .spec.shipped import apply_overrides, resolve_spec, revalidated


def build_fx(spec: Spec | ImageSpec) -> CliqueNetGraphModule | ImageGraphModule:
    """The spec's network as a freshly initialised ``torch.fx.GraphModule``; the spec is
    validated again first (:func:`revalidated`), so a changed Spec gives a SpecError."""
    spec = revalidated(spec)
    program = compile_spec(spec).program
    if isinstance(spec, ImageSpec):
        return emit_image_fx(program, class_name=class_name(spec))
    return emit_fx(program, class_name=class_name(spec))


EMITTERS: dict[str, Callable[[Spec | ImageSpec], nn.Module]] = {"fx": build_fx, "source": build_source_model}


def create_model(
    name_or_path: str | os.PathLike | Spec | ImageSpec, emit: str = "fx", **overrides: Any
) -> nn.Module:
    """Build a freshly initialised model from a shipped spec name, a spec path or a Spec.

    ``emit="fx"`` gives a ``torch.fx.GraphModule``; ``emit="source"`` runs the generated
    Python source (``cliquegen build``) and gives an instance of its ``Model``, with the same
    ``state_dict`` keys and, for the same torch seed, the same initial weights.  Overrides merge
    into the spec (:func:`apply_overrides`): ``num_classes=100``, ``defaults={"dropout": 0.1}``,
    ``memory_efficient=True`` (recompute each clique update in the backward pass instead of
    storing its intermediates); ``num_classes=0`` gives a model without a classifier, whose
    ``forward`` returns the pooled features.
    """
    spec = revalidated(apply_overrides(resolve_spec(name_or_path), **overrides))
    if emit not in EMITTERS:
        raise UsageError(f"unknown emitter {emit!r}; choose one of {sorted(EMITTERS)}")
    return EMITTERS[emit](spec)
