"""The driver of ``cliquegen build``: generate the modules of several specs and write them together."""

from __future__ import annotations

import os
from pathlib import Path

from .._io import atomic_write_all, made_folder
from .._version import __version__
from ..compiler.ir import sanitize_identifier
from ..compiler.lower import Compiled, compile_spec
from ..errors import UsageError
from ..spec.model import Spec
from .pytext import ident
from .source import GENERATED_MARKER, SpecOrigin, render_source


def build_files(
    specs: list[tuple[Spec, SpecOrigin]], out_dir: str | os.PathLike[str], *, force: bool = False
) -> list[tuple[Path, Compiled]]:
    """Write ``out_dir/<module>.py`` for every loaded spec (with where it came from, for the
    header; :func:`~cliquegen.emit.source.load_with_origin`); return the paths and compiled specs.

    All or nothing: every module is generated before anything is written, and the files are
    written together (:func:`~cliquegen._io.atomic_write_all`), so one target that cannot be
    written leaves ``out_dir`` as it was (a folder this call made is removed again).  A file
    there that cliquegen did not generate is never replaced, unless ``force``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a folder; -o names the folder the modules go to")
    jobs: dict[str, tuple[str, Compiled]] = {}  # module file name -> (text, compiled)
    for spec, origin in specs:
        file_name = f"{ident(sanitize_identifier(spec.module_name))}.py"
        if file_name in jobs:
            raise UsageError(f"{origin.path}: another spec also builds {file_name} (spec names must differ)")
        compiled = compile_spec(spec)
        jobs[file_name] = (render_source(compiled, origin, __version__), compiled)

    with made_folder(out) as folder:
        files = [(folder / file_name, text) for file_name, (text, _) in jobs.items()]
        atomic_write_all(files, root=folder, force=force, generated_marker=GENERATED_MARKER)
    return [(out / file_name, compiled) for file_name, (_, compiled) in jobs.items()]
