"""Shipped specs and the model factory (timm style: one build path, name or path in)."""

from __future__ import annotations

import difflib
import fnmatch
import os
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic, SpecError, UnknownArgumentError, UsageError, code_points
from .diagnose import close_fields
from .model import Spec, SpecSemanticError
from .network import ImageSpec

_PACKAGE = Path(__file__).resolve().parent.parent

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


def family(name: str) -> str:
    """The family of a shipped spec, the first word of its name: ``cliquenet``, ``densenet``."""
    return name.split("-", 1)[0]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the shipped specs matching a shell-style pattern."""
    return [name for name in shipped_specs() if fnmatch.fnmatchcase(name, pattern)]


def resolve_spec(name_or_path: str | os.PathLike | Spec | ImageSpec) -> Spec | ImageSpec:
    """A Spec from a Spec, a path to a YAML file, or the name of a shipped spec."""
    from .loader import load_spec

    if isinstance(name_or_path, (Spec, ImageSpec)):
        return name_or_path
    text = os.fspath(name_or_path)
    shipped = shipped_specs()
    if text in shipped:
        return load_spec(shipped[text])
    if text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).exists():
        return load_spec(Path(text))
    close = difflib.get_close_matches(text, list(shipped), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UsageError(
        f"Unknown model {text!r}{code_points(text)}.{hint} `cliquegen list` shows the shipped ones."
    )


def apply_overrides(spec: Spec | ImageSpec, **overrides: Any) -> Spec | ImageSpec:
    """Return ``spec`` with ``overrides`` merged in, section by section.

    ``num_classes=100`` replaces a field; ``defaults={"dropout": 0.1}`` changes only that key of
    the section (mappings merge at every depth), while a list such as ``blocks`` is replaced
    whole.  Aliases as in timm: ``in_chans`` (input.channels), ``drop_rate`` (defaults.dropout).
    ``None`` values are dropped at any depth, so callers can pass their own optional arguments
    through.  The result is validated as a spec file is: ``override defaults.dropot: unknown
    key; did you mean `dropout`?``.
    """
    overrides = _without_none(overrides)
    if not overrides:
        return spec
    model = type(spec)
    data = spec.model_dump(exclude_unset=True)
    for key, value in overrides.items():
        if key in _OVERRIDE_ALIASES and _OVERRIDE_ALIASES[key][0] in model.model_fields:
            section, field = _OVERRIDE_ALIASES[key]
            data[section] = {**data.get(section, {}), field: value}
        elif key in model.model_fields:
            current = data.get(key)
            data[key] = merge_mappings(current, value) if isinstance(current, dict) else value
        else:
            close = difflib.get_close_matches(key, list(model.model_fields) + list(_OVERRIDE_ALIASES), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise UnknownArgumentError(f"override {key}: unknown key{hint}")
    try:
        result = model.model_validate(data)
    except ValidationError as error:
        problems = [(tuple(e["loc"]), _override_message(e, model)) for e in error.errors(include_url=False)]
    except SpecSemanticError as error:
        problems = error.problems
    else:
        replaced = {key: getattr(spec, key) for key in overrides if key in model.model_fields}
        result._overridden = {
            **replaced,
            **spec.overridden,
        }  # the spec's own values, not those of an override
        return result
    where = f"<{spec.name} overrides>"
    raise SpecError(
        [Diagnostic(where, None, None, f"override {'.'.join(map(str, loc))}: {msg}") for loc, msg in problems]
    )


def revalidated(spec: Spec | ImageSpec) -> Spec | ImageSpec:
    """``spec`` checked again, as the builders receive it: a Spec is frozen, but
    ``model_copy(update=...)``, ``model_construct`` and its lists change it without validation,
    and such a Spec must give a SpecError here, not a raw exception deep in the compiler."""
    if not isinstance(spec, (Spec, ImageSpec)):
        raise UsageError(f"expected a Spec, got {type(spec).__name__}")
    where = f"<{getattr(spec, 'name', 'spec')} object>"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic warns while dumping wrongly typed fields
            data = spec.model_dump(exclude_unset=True)
        return type(spec).model_validate(data)
    except ValidationError as error:
        problems = [
            (tuple(e["loc"]), _override_message(e, type(spec))) for e in error.errors(include_url=False)
        ]
    except SpecSemanticError as error:
        problems = error.problems
    except (AttributeError, TypeError, ValueError) as error:  # fields missing (model_construct)
        problems = [((), f"the Spec object is incomplete ({error})")]
    raise SpecError(
        [
            Diagnostic(
                where, None, None, f"{'.'.join(map(str, loc)) or 'spec'}: {msg} (changed after validation?)"
            )
            for loc, msg in problems
        ]
    )


def _without_none(value: Any) -> Any:
    """``value`` with every ``None`` entry of its mappings removed (pydantic models as mappings)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    return value


def merge_mappings(base: dict[str, Any], update: Any) -> Any:
    """``update`` merged into ``base``: mappings key by key, at every depth; anything else replaces."""
    if not isinstance(update, dict):
        return update
    merged = dict(base)
    for key, value in update.items():
        merged[key] = merge_mappings(merged[key], value) if isinstance(merged.get(key), dict) else value
    return merged


def _override_message(error: dict[str, Any], model: type[BaseModel]) -> str:
    """pydantic's message, in the words the spec loader uses for the same mistake."""
    if error["type"] == "extra_forbidden":
        close = close_fields(tuple(error["loc"]), model)
        return f"unknown key; did you mean `{close[0]}`?" if close else "unknown key"
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]
