"""Shipped specs and the model factory (timm style: one build path, name or path in)."""

from __future__ import annotations

import difflib
import fnmatch
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from .errors import Diagnostic, SpecError, UsageError
from .spec import Spec, SpecSemanticError

_PACKAGE = Path(__file__).resolve().parent

#: Aliases accepted by create_model, as in timm; each maps to a spec location.
_OVERRIDE_ALIASES = {
    "in_chans": ("input", "channels"),
    "drop_rate": ("defaults", "dropout"),
}


def specs_dir() -> Path:
    """Folder of the shipped specs: $CLIQUEGEN_SPECS, the source checkout, or the installed copy."""
    if os.environ.get("CLIQUEGEN_SPECS"):
        return Path(os.environ["CLIQUEGEN_SPECS"])
    checkout = _PACKAGE.parent / "specs"
    return checkout if checkout.is_dir() else _PACKAGE / "_shipped_specs"


def shipped_specs() -> dict[str, Path]:
    """Shipped spec names (file stems) -> paths, sorted by name."""
    paths = sorted(specs_dir().rglob("*.yaml"))
    return dict(sorted((path.stem, path) for path in paths))


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the shipped specs matching a shell-style pattern."""
    return [name for name in shipped_specs() if fnmatch.fnmatchcase(name, pattern)]


def resolve_spec(name_or_path: str | os.PathLike | Spec) -> Spec:
    """A Spec from a Spec, a path to a YAML file, or the name of a shipped spec."""
    from .loader import load_spec

    if isinstance(name_or_path, Spec):
        return name_or_path
    text = os.fspath(name_or_path)
    shipped = shipped_specs()
    if text in shipped:
        return load_spec(shipped[text])
    if text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).exists():
        return load_spec(Path(text))
    close = difflib.get_close_matches(text, list(shipped), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(f"Unknown model {text!r}.{hint} `cliquegen list` shows the shipped ones.")


def apply_overrides(spec: Spec, **overrides: Any) -> Spec:
    """Return ``spec`` with top-level fields (or aliases such as ``in_chans``) replaced.

    ``None`` values are dropped, so callers can pass their own optional arguments through.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if not overrides:
        return spec
    data = spec.model_dump(exclude_unset=True)
    for key, value in overrides.items():
        if key in _OVERRIDE_ALIASES:
            section, field = _OVERRIDE_ALIASES[key]
            data[section] = {**data.get(section, {}), field: value}
        elif key in Spec.model_fields:
            data[key] = value
        else:
            close = difflib.get_close_matches(key, list(Spec.model_fields) + list(_OVERRIDE_ALIASES), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise UsageError(f"unknown override `{key}`{hint}")
    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        problems = [(e["loc"], e["msg"]) for e in error.errors()]
    except SpecSemanticError as error:
        problems = error.problems
    raise SpecError(
        [
            Diagnostic(f"<{spec.name} overrides>", None, None, f"{'.'.join(map(str, loc))}: {msg}")
            for loc, msg in problems
        ]
    )


def create_model(name_or_path: str | os.PathLike | Spec, emit: str = "fx", **overrides: Any) -> nn.Module:
    """Build a freshly initialised model from a shipped spec name, a spec path or a Spec.

    ``emit="fx"`` gives a ``torch.fx.GraphModule``; ``emit="source"`` runs the generated
    Python source (``cliquegen build``) and gives an instance of its ``Model``, with the same
    ``state_dict`` keys and, for the same torch seed, the same initial weights.  Overrides
    replace top-level spec fields (``num_classes=100``; ``memory_efficient=True`` recomputes
    each clique update in the backward pass instead of storing its intermediates).
    """
    from ._builder import EMITTERS

    spec = apply_overrides(resolve_spec(name_or_path), **overrides)
    builders = EMITTERS
    if emit not in builders:
        raise UsageError(f"unknown emitter {emit!r}; choose one of {sorted(builders)}")
    return builders[emit](spec)
