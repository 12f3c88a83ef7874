"""Safe file output: the one way cliquegen writes a file.

:func:`atomic_write` writes a temporary file in the target's folder, fsyncs it and renames
it over the target (``os.replace``), so a reader sees the old file or the new one, never
half of one, and a crash leaves no partial output.  It refuses, with a UsageError:

- to write outside ``root`` when one is given (after resolving ``..`` and symlinks, so a
  link planted in the output folder cannot redirect a write elsewhere);
- to overwrite a file cliquegen did not write: with ``generated_marker``, an existing file
  must carry the marker in its first lines (the header of every generated module does),
  unless ``force``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import UsageError

MARKER_BYTES = 4096  # the marker must appear this early: in the header, not anywhere


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    generated_marker: str | None = None,
) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; return the path written.

    ``root``: refuse any target that does not resolve to a path inside this folder.
    ``generated_marker``: refuse to replace an existing file whose first lines lack it,
    unless ``force``.  Without a marker an existing file is replaced (the caller names a
    file the user asked for, such as ``-o FILE``).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _write(path, lambda out: out.write(payload), root=root, force=force, marker=generated_marker)


def torch_save_atomic(
    obj: Any, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """``torch.save(obj)`` through :func:`atomic_write`'s temporary file and rename."""
    import torch

    return _write(path, lambda out: torch.save(obj, out), root=root, force=False, marker=None)


def _write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    root: str | os.PathLike[str] | None,
    force: bool,
    marker: str | None,
) -> Path:
    target = _confined(Path(path), root)
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {target.parent} does not exist")
    if target.exists():
        if not target.is_file():
            raise UsageError(f"cannot write {path}: it exists and is not a regular file")
        if marker is not None and not force and not _carries(target, marker):
            raise UsageError(
                f"refusing to overwrite {path}: cliquegen did not write it (its header lacks "
                f"{marker!r}); move it away or pass --force"
            )
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    _fsync_folder(target.parent)
    return target


def _confined(target: Path, root: str | os.PathLike[str] | None) -> Path:
    """``target`` with symlinks and ``..`` resolved; refused when it leaves ``root``."""
    resolved = target.resolve()
    if root is None:
        return resolved
    folder = Path(root).resolve()
    if resolved == folder or not resolved.is_relative_to(folder):
        raise UsageError(f"refusing to write {target}: it is outside the output folder {root}")
    return resolved


def _carries(file: Path, marker: str) -> bool:
    try:
        with file.open("rb") as stream:
            head = stream.read(MARKER_BYTES)
    except OSError:
        return False
    return marker.encode("utf-8") in head


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
