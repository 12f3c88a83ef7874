"""Load a YAML spec into a :class:`~cliquegen.spec.Spec`, locating every problem in the file.

The YAML is composed into a node tree with PyYAML's safe loader (no Python tags, ever) and
converted by hand into plain Python values.  The conversion records, for every location
``("blocks", 0, "layers")``, the node that holds the value and the node of its key, so that
pydantic errors and :class:`~cliquegen.spec.SpecSemanticError` problems, which both name
such locations, are reported at the line and column a person has to edit::

    specs/x.yaml:7:15: error: `layers` must be at least 1, got 0

Every user error becomes a :class:`~cliquegen.errors.SpecError` carrying all the problems
found, sorted by position.  YAML-level problems (syntax, duplicate keys, tags, aliases that
expand too far) are reported before, and instead of, schema problems.
"""

from __future__ import annotations

import os
import sys
import typing
from pathlib import Path

from pydantic import ValidationError

from ..errors import Diagnostic, SpecError
from .base import Provenance
from .diagnose import explain_problem, explain_validation_error
from .model import Spec, SpecSemanticError
from .network import ImageSpec
from .yaml_tree import MAX_BYTES, YamlTree, describe, position, sorted_unique


def load_spec(source: str | os.PathLike[str], *, path: str | None = None) -> Spec | ImageSpec:
    """Load and validate a spec from a file or from YAML text.

    ``source`` is a file when it is a :class:`os.PathLike` (such as :class:`pathlib.Path`), or
    a ``str`` without a newline that ends in ``.yaml`` or ``.yml`` (any case); any other
    ``str`` is YAML text.  ``path`` is the name used in messages (default: the file path as
    given, or ``<string>`` for text).

    A spec with a ``network:`` list is an image-to-image network (:class:`ImageSpec`); any
    other, a classification network (:class:`Spec`).

    Raises :class:`SpecError` for every problem in the input, never another exception.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _names_a_file(source)):
        name = path if path is not None else os.fspath(source)
        return _validated(name, _decode(_read_bytes(Path(source), name), name), "file")
    if isinstance(source, str):
        name = path if path is not None else "<string>"
        return _validated(name, source, "text", looks_like_path="\n" not in source.strip())
    raise TypeError(f"load_spec expects a path or YAML text, got {type(source).__name__}")


def load_spec_text(text: object, *, path: str = "<string>") -> Spec | ImageSpec:
    """Load and validate a spec from YAML text only: whatever the text looks like (a file name
    ending in ``.yaml`` included), no file is read.  For spec text taken from other files,
    such as a Hugging Face Hub ``config.json``.  Raises :class:`SpecError` for anything else,
    also for a value that is not text."""
    if not isinstance(text, str):
        message = f"expected the spec's YAML text, got {describe(text)}"
        raise SpecError([Diagnostic(path, None, None, message)])
    return _validated(path, text, "text")


def _validated(name: str, text: str, hashed: str, *, looks_like_path: bool = False) -> Spec | ImageSpec:
    """The spec of YAML ``text``, recording where it came from (``hashed``: see Provenance)."""
    tree = YamlTree(name, text, looks_like_path)
    root = spec_model(tree.value)
    try:
        spec = root.model_validate(tree.value)
        return spec.with_provenance(Provenance.of_text(name, text, hashed))
    except ValidationError as error:
        diagnostics = explain_validation_error(error, tree, root)
    except SpecSemanticError as error:
        diagnostics = [explain_problem(loc, message, tree, root) for loc, message in error.problems]
    raise SpecError(sorted_unique(diagnostics))


def spec_model(value: object) -> type[Spec] | type[ImageSpec]:
    """The model a spec's top-level mapping is validated into."""
    return ImageSpec if isinstance(value, dict) and "network" in value else Spec


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


#: The spec argument that means standard input (``cat spec.yaml | cliquegen build -``).
STDIN = "-"


def read_spec_source(source: str | os.PathLike[str], *, path: str | None = None) -> tuple[str, bytes]:
    """(the name messages use, the bytes) of a spec file, read once and bounded by
    :data:`MAX_BYTES`; :data:`STDIN` is standard input, named ``<stdin>``.  Read once, so a
    pipe (``/dev/stdin``) gives the same text to every check and to the header's sha256."""
    if os.fspath(source) == STDIN:
        name = "<stdin>" if path in (None, STDIN) else path
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise SpecError([Diagnostic(name, None, None, "cannot read the spec: standard input is closed")])
        return name, _read_bytes(stream, name)
    name = path if path is not None else os.fspath(source)
    return name, _read_bytes(Path(source), name)


def load_spec_bytes(data: bytes, *, path: str, hashed: str = "file") -> Spec | ImageSpec:
    """Load and validate a spec from the bytes of a file (:func:`read_spec_source`)."""
    return _validated(path, _decode(data, path), hashed)


def _read_bytes(file: Path | typing.BinaryIO, name: str) -> bytes:
    try:
        if isinstance(file, Path):
            with file.open("rb") as stream:
                data = stream.read(MAX_BYTES + 1)
        else:
            data = file.read(MAX_BYTES + 1)
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
        line, column = position(good, len(good))
        message = f"the file is not valid UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8"
        raise SpecError([Diagnostic(name, line, column, message)]) from None


# --- text -> node tree -> plain values with locations ------------------------------------------


# --- validation errors -> diagnostics ----------------------------------------------------------


# --- what the models accept where ----------------------------------------------------------------


# --- wording -------------------------------------------------------------------------------------
