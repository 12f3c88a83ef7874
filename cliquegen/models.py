"""The one build path from a Spec to a model (``build_fx``, ``create_model``), shared by the API,
the timm factory and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .compiler.lower import compile_spec
from .compiler.naming import class_name
from .emit.build import build_source_model, placed
from .emit.fx import CliqueNetGraphModule, emit_fx
from .emit.fx_image import ImageGraphModule, emit_image_fx
from .errors import UsageError
from .spec.model import Spec
from .spec.network import ImageSpec
from .spec.shipped import apply_overrides, resolve_spec, revalidated

#: The head's global pooling: average over the positions, or none (the model returns the map).
GLOBAL_POOLS = ("avg", "")


def build_fx(
    spec: Spec | ImageSpec, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> CliqueNetGraphModule | ImageGraphModule:
    """The spec's network as a freshly initialised ``torch.fx.GraphModule``, its parameters made
    on ``device`` in ``dtype`` (torch's defaults when None); the spec is validated again first
    (:func:`revalidated`), so a changed Spec gives a SpecError."""
    spec = revalidated(spec)
    program = compile_spec(spec).program
    if isinstance(spec, ImageSpec):  # not a timm model: built, then moved
        return placed(emit_image_fx(program, class_name=class_name(spec)), device, dtype)
    return emit_fx(program, class_name=class_name(spec), device=device, dtype=dtype)


EMITTERS: dict[str, Callable[..., nn.Module]] = {"fx": build_fx, "source": build_source_model}


def create_model(
    name_or_path: str | os.PathLike | Spec | ImageSpec,
    emit: str = "fx",
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    global_pool: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a freshly initialised model from a shipped spec name, a spec path or a Spec.

    ``emit="fx"`` gives a ``torch.fx.GraphModule``; ``emit="source"`` runs the generated
    Python source (``cliquegen build``) and gives an instance of its ``Model``, with the same
    ``state_dict`` keys and, for the same torch seed, the same initial weights.  Overrides merge
    into the spec (:func:`apply_overrides`): ``num_classes=100``, ``defaults={"dropout": 0.1}``,
    ``memory_efficient=True`` (recompute each clique update in the backward pass instead of
    storing its intermediates); ``num_classes=0`` gives a model without a classifier, whose
    ``forward`` returns the pooled features.  An unknown override is a ``TypeError`` (and a
    ``UsageError``), as an unknown keyword argument is.

    timm's model arguments: ``device`` and ``dtype`` make the parameters there and in that dtype
    directly (``device="meta"`` allocates nothing); ``global_pool=""`` leaves the features
    unpooled, so that with ``num_classes=0`` ``forward`` returns ``forward_features``' map.  An
    image-to-image network is no timm model: it is made, then moved to ``device`` and ``dtype``,
    and ``global_pool`` is a UsageError (it has no head).
    """
    spec = revalidated(apply_overrides(resolve_spec(name_or_path), **overrides))
    if emit not in EMITTERS:
        raise UsageError(f"unknown emitter {emit!r}; choose one of {sorted(EMITTERS)}")
    if global_pool is not None and global_pool not in GLOBAL_POOLS:
        raise UsageError(f"global_pool={global_pool!r}: choose 'avg' (average) or '' (no pooling)")
    if global_pool is not None and isinstance(spec, ImageSpec):
        raise UsageError(f"global_pool: spec {spec.name!r} is an image-to-image network, without a head")
    model = EMITTERS[emit](spec, device=device, dtype=dtype)
    if global_pool is not None and global_pool != model.global_pool:
        model.global_pool = global_pool
        model.refresh_forward()
    return model
