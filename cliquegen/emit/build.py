"""From specs to generated modules: their text (``generate_source``), a model built from it
(``build_source_model``), and the files of ``cliquegen build`` written together (``build_files``)."""

from __future__ import annotations

import dataclasses
import linecache
import os
import types
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write_all, made_folder
from .._version import __version__
from ..compiler.ir import sanitize_identifier
from ..compiler.lower import Compiled, compile_spec
from ..errors import UsageError
from ..spec.base import Provenance
from ..spec.loader import load_spec
from ..spec.model import Spec
from ..spec.network import ImageSpec
from .image_source import render_image_source
from .pytext import ident
from .source import GENERATED_MARKER, render_source


def generate_source(spec: Spec | ImageSpec | str | os.PathLike[str], *, path: str | None = None) -> str:
    """The spec's model as standalone Python source (a module that imports only torch).

    ``spec`` is a :class:`Spec` or an :class:`ImageSpec`, or a spec file or YAML text as for
    ``load_spec``.  The header names where it came from (its
    :attr:`~cliquegen.spec.model.Spec.provenance`: the file as given, ``<string>`` for text;
    ``path`` overrides the name) and the sha256 of its bytes; a Spec made in Python is hashed
    as its canonical JSON.
    """
    if not isinstance(spec, (Spec, ImageSpec)):
        spec = load_spec(spec, path=path)
    provenance = spec.provenance
    if path is not None:
        provenance = dataclasses.replace(provenance, path=path)
    return module_text(compile_spec(spec), provenance)


def module_text(compiled: Compiled, provenance: Provenance) -> str:
    """The generated module of a compiled spec: an image network's or a classifier's."""
    render = render_image_source if isinstance(compiled.spec, ImageSpec) else render_source
    return render(compiled, provenance, __version__)


def exec_source(text: str, module_name: str) -> types.ModuleType:
    """Run generated text as a fresh module (not put in ``sys.modules``); tracebacks show it."""
    filename = f"<cliquegen generated {module_name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = types.ModuleType(module_name)
    exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 (text we generated)
    return module


def build_source_model(
    spec: Spec | ImageSpec, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """A freshly initialised instance of the generated module's ``Model``, its parameters made
    on ``device`` in ``dtype`` (an image network's: made, then moved)."""
    module = exec_source(generate_source(spec), spec.module_name)
    if isinstance(spec, ImageSpec):
        return placed(module.Model(), device, dtype)
    return module.Model(device=device, dtype=dtype)


def placed(model: nn.Module, device: torch.device | str | None, dtype: torch.dtype | None) -> nn.Module:
    """``model`` moved to ``device`` and ``dtype`` where they are given (image networks, which
    are no timm models, are made on torch's defaults first)."""
    if device is None and dtype is None:
        return model
    return model.to(device=device, dtype=dtype)


def build_files(
    specs: list[Spec | ImageSpec], out_dir: str | os.PathLike[str], *, force: bool = False
) -> list[tuple[Path, Compiled]]:
    """Write ``out_dir/<module>.py`` for every loaded spec (its header names the file the
    loader read); return the paths and compiled specs.

    All or nothing: every module is generated before anything is written, and the files are
    written together (:func:`~cliquegen._io.atomic_write_all`), so one target that cannot be
    written leaves ``out_dir`` as it was (a folder this call made is removed again).  A file
    there that cliquegen did not generate is never replaced, unless ``force``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a folder; -o names the folder the modules go to")
    jobs: dict[str, tuple[str, Compiled]] = {}  # module file name -> (text, compiled)
    for spec in specs:
        file_name = f"{ident(sanitize_identifier(spec.module_name))}.py"
        if file_name in jobs:
            raise UsageError(
                f"{spec.provenance.path}: another spec also builds {file_name} (spec names must differ)"
            )
        compiled = compile_spec(spec)
        jobs[file_name] = (module_text(compiled, spec.provenance), compiled)

    with made_folder(out) as folder:
        files = [(folder / file_name, text) for file_name, (text, _) in jobs.items()]
        atomic_write_all(files, root=folder, force=force, generated_marker=GENERATED_MARKER)
    return [(out / file_name, compiled) for file_name, (_, compiled) in jobs.items()]
