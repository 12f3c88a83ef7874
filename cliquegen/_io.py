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

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    with atomic_output(path, root=root, force=force, generated_marker=generated_marker) as tmp:
        tmp.write_bytes(payload)
    return _confined(Path(path), root)


def torch_save_atomic(
    obj: Any, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """``torch.save(obj)`` through :func:`atomic_output`'s temporary file and rename."""
    import torch

    with atomic_output(path, root=root) as tmp:
        torch.save(obj, tmp)
    return _confined(Path(path), root)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    generated_marker: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (torch.save,
    torch.onnx.export, ...); on success it is fsynced and renamed over ``path``, on any error
    removed, leaving ``path`` as it was.  Same checks as :func:`atomic_write`."""
    target = _confined(Path(path), root)
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {target.parent} does not exist")
    if target.exists():
        if not target.is_file():
            raise UsageError(f"cannot write {path}: it exists and is not a regular file")
        if generated_marker is not None and not force and not _carries(target, generated_marker):
            raise UsageError(
                f"refusing to overwrite {path}: cliquegen did not write it (its header lacks "
                f"{generated_marker!r}); move it away or pass --force"
            )
    try:
        fd, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
        )
        os.close(fd)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    _fsync_folder(target.parent)


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
