"""Load a YAML spec into a :class:`~cliquegen.spec.Spec`, locating every problem in the file.

The text is read into a node tree (:mod:`cliquegen.spec.yaml_tree`) and validated; every
problem is reported at the line and column a person has to edit
(:mod:`cliquegen.spec.diagnose`)::

    specs/x.yaml:7:15: error: `layers` must be at least 1, got 0

Every user error becomes a :class:`~cliquegen.errors.SpecError` carrying all the problems
found, sorted by position.  YAML-level problems (syntax, duplicate keys, tags, aliases that
expand too far) are reported before, and instead of, schema problems.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from ..errors import Diagnostic, SpecError
from .diagnose import _explain_problem, _explain_validation_error, close_fields
from .model import Spec, SpecSemanticError
from .yaml_tree import MAX_BYTES, MAX_DEPTH, MAX_VALUES, _position, _sorted_unique, _Tree

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_VALUES", "close_fields", "load_spec", "spec_files"]


def load_spec(source: str | os.PathLike[str], *, path: str | None = None) -> Spec:
    """Load and validate a spec from a file or from YAML text.

    ``source`` is a file when it is a :class:`os.PathLike` (such as :class:`pathlib.Path`), or
    a ``str`` without a newline that ends in ``.yaml`` or ``.yml`` (any case); any other
    ``str`` is YAML text.  ``path`` is the name used in messages (default: the file path as
    given, or ``<string>`` for text).

    Raises :class:`SpecError` for every problem in the input, never another exception.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _names_a_file(source)):
        name = path if path is not None else os.fspath(source)
        text = _decode(_read_bytes(Path(source), name), name)
        looks_like_path = False
    elif isinstance(source, str):
        name, text = (path if path is not None else "<string>"), source
        looks_like_path = "\n" not in source.strip()
    else:
        raise TypeError(f"load_spec expects a path or YAML text, got {type(source).__name__}")

    tree = _Tree(name, text, looks_like_path)
    try:
        return Spec.model_validate(tree.value)
    except ValidationError as error:
        diagnostics = _explain_validation_error(error, tree)
    except SpecSemanticError as error:
        diagnostics = [_explain_problem(loc, message, tree) for loc, message in error.problems]
    raise SpecError(_sorted_unique(diagnostics))


def spec_files(paths: list[str]) -> list[str]:
    """``paths`` with every folder replaced by the spec files under it (``*.yaml``, ``*.yml``,
    any case; symlinked folders not followed), sorted, as paths under the folder as given."""
    files = []
    for given in paths:
        if not os.path.isdir(given):
            files.append(given)
            continue
        found = []
        for folder, subfolders, names in os.walk(given):
            subfolders.sort()
            found += [os.path.join(folder, name) for name in names if _names_a_file(name)]
        if not found:
            raise SpecError([Diagnostic(given, None, None, "no spec (*.yaml, *.yml) in this folder")])
        files += sorted(found)
    return files


def _names_a_file(text: str) -> bool:
    return "\n" not in text and text.lower().endswith((".yaml", ".yml"))


# --- bytes -> text ---------------------------------------------------------------------------


def _read_bytes(file: Path, name: str) -> bytes:
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as error:
        raise SpecError(
            [Diagnostic(name, None, None, f"cannot read the spec: {error.strerror or error}")]
        ) from None
    if len(data) > MAX_BYTES:
        raise SpecError(
            [Diagnostic(name, None, None, f"the file is larger than {MAX_BYTES} bytes; is it a spec?")]
        )
    return data


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        good = data[: error.start].decode("utf-8")
        line, column = _position(good, len(good))
        message = f"the file is not valid UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8"
        raise SpecError([Diagnostic(name, line, column, message)]) from None
