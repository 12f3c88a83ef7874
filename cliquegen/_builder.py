"""One build path from a Spec to a model, shared by the API, the factory and the CLI."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .emit.fx import CliqueNetGraphModule, emit_fx
from .emit.source import build_source_model
from .lower import compile_spec
from .naming import class_name
from .spec import Spec


def build_fx(spec: Spec) -> CliqueNetGraphModule:
    """The spec's network as a freshly initialised ``torch.fx.GraphModule``."""
    return emit_fx(compile_spec(spec).program, class_name=class_name(spec))


EMITTERS: dict[str, Callable[[Spec], nn.Module]] = {"fx": build_fx, "source": build_source_model}
