"""Safe file output: the one way cliquegen writes a file.

:func:`atomic_write` writes a temporary file in the target's folder, fsyncs it and renames
it over the target (``os.replace``), so a reader sees the old file or the new one, never
half of one, and a crash leaves no partial output.  :func:`atomic_write_all` writes several
files or none.  Inside :func:`signals_raise` (the CLI runs every command there), SIGINT,
SIGTERM and SIGHUP raise :class:`Interrupted`, so the temporary file of an interrupted write
is removed like that of a failed one.  Every OS error becomes a UsageError naming the path
and the reason.  The writers refuse, with a UsageError:

- to write outside ``root`` when one is given (after resolving ``..`` and symlinks, so a
  link planted in the output folder cannot redirect a write elsewhere);
- to overwrite a file cliquegen did not write: with ``generated_marker``, an existing file
  must carry the marker in its first lines (the header of every generated module does),
  unless ``force``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

#: Data and weight files larger than this are refused before reading (the authors' S3
#: checkpoint, optimizer state included, is about 120 MB).
MAX_FILE_BYTES = 2 * 1024**3

MARKER_BYTES = 4096  # the marker must appear this early: in the header, not anywhere


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | str,
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
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path, root=root, force=force, generated_marker=generated_marker) as tmp:
        tmp.write_bytes(payload)
    return confined(Path(path), root)


def torch_save_atomic(
    obj: Any, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """``torch.save(obj)``, written with :func:`atomic_write`.  The archive is built in memory
    first: torch's own file writer turns a full disk into an exception it raises from a
    destructor (a crash, not an error), while Python's write reports it as an OSError."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer(), root=root)


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
    or interruption (see :func:`signals_raise`) removed, leaving ``path`` as it was.  Same
    checks as :func:`atomic_write`."""
    target = _checked_target(path, root, force, generated_marker)
    tmp = _temporary(target, path)
    try:
        yield tmp
        _finish(tmp)
        os.replace(tmp, target)
    except BaseException as error:
        _discard(tmp)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {path}: {_reason(error)}") from None
        raise
    _fsync_folder(target.parent)


def atomic_write_all(
    files: Sequence[tuple[str | os.PathLike[str], bytes | str]],
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    generated_marker: str | None = None,
) -> list[Path]:
    """Write every ``(path, data)`` or none of them (same checks as :func:`atomic_write`).

    Every target is checked, then every temporary file written and fsynced, before the first
    rename; should a rename still fail (or a signal arrive), the files already renamed are
    put back as they were: the old contents restored, new files removed.
    """
    targets = [_checked_target(path, root, force, generated_marker) for path, _ in files]
    if len(set(targets)) != len(targets):
        raise UsageError("two outputs would be written to the same file")
    temps: list[Path] = []
    backups: dict[Path, Path | None] = {}  # target -> hard link to its old contents (None: new)
    try:
        for (path, data), target in zip(files, targets, strict=True):
            temps.append(_temporary(target, path))
            temps[-1].write_bytes(data.encode("utf-8") if isinstance(data, str) else bytes(data))
            _finish(temps[-1])
        for (path, _), target, tmp in zip(files, targets, list(temps), strict=True):
            backups[target] = _backup(target, path, temps)
            os.replace(tmp, target)
    except BaseException as error:
        for target, backup in backups.items():  # undo the renames, newest first does not matter
            with contextlib.suppress(OSError):
                if backup is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(backup, target)
        for tmp in temps:
            _discard(tmp)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {error.filename or 'the outputs'}: {_reason(error)}") from None
        raise
    for backup in backups.values():
        if backup is not None:
            _discard(backup)
    for folder in {target.parent for target in targets}:
        _fsync_folder(folder)
    return targets


@contextlib.contextmanager
def made_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Create ``folder`` (and missing parents) for the writes inside; yield it resolved.  When
    they fail, the folders this made are removed again (they are empty: writes are atomic)."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        above = next((p for p in folder.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise UsageError(f"cannot make the folder {folder}: {above} is a file, not a folder") from None
        raise UsageError(f"cannot make the folder {folder}: {_reason(error)}") from None
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    try:
        yield folder.resolve()
    except BaseException:
        for made in missing:  # innermost first
            with contextlib.suppress(OSError):
                made.rmdir()
        raise


def _checked_target(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None,
    force: bool,
    generated_marker: str | None,
) -> Path:
    """The resolved target of a write, after every check that can refuse it."""
    target = confined(Path(path), root)
    parent = target.parent
    if not parent.is_dir():
        above = next((p for p in (parent, *parent.parents) if p.exists()), None)
        if above is not None and not above.is_dir():
            raise UsageError(f"cannot write {path}: {above} is a file, not a folder")
        raise UsageError(f"cannot write {path}: the folder {parent} does not exist")
    if target.exists():
        if not target.is_file():
            raise UsageError(f"cannot write {path}: it exists and is not a regular file")
        if generated_marker is not None and not force and not _carries(target, generated_marker):
            raise UsageError(
                f"refusing to overwrite {path}: cliquegen did not write it (its header lacks "
                f"{generated_marker!r}); move it away or pass --force"
            )
    return target


#: Signals that :func:`signals_raise` turns into :class:`Interrupted`.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _temporary(target: Path, path: str | os.PathLike[str]) -> Path:
    """A new empty file beside ``target`` with the usual mode, for a write about to happen.
    Signals wait while it is created, so an interruption never leaves one no code knows of."""
    blocked = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    if blocked:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        fd, name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}"
        )
        os.close(fd)
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    except OSError as error:
        raise UsageError(f"cannot write {path}: {_reason(error)}") from None
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return Path(name)


def _finish(tmp: Path) -> None:
    """Flush a written temporary file to disk before it is renamed into place."""
    with tmp.open("rb") as written:
        os.fsync(written.fileno())


def _backup(target: Path, path: str | os.PathLike[str], temps: list[Path]) -> Path | None:
    """A hard link (or, where links are not supported, a copy) to ``target``'s current
    contents, listed in ``temps``; None when ``target`` does not exist yet."""
    if not target.exists():
        return None
    backup = _temporary(target, path)
    temps.append(backup)
    backup.unlink()
    try:
        os.link(target, backup)
    except OSError:
        shutil.copy2(target, backup)
    return backup


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _reason(error: OSError) -> str:
    """An OS error as a person reads it: "No space left on device"."""
    return error.strerror or str(error)


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM, SIGHUP) that stops the command; raised where the program is,
    so every cleanup (``finally``, :func:`atomic_output`) runs.  ``exit_status`` is 128 + the
    signal's number, as a shell reports a process that signal ended."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_status = 128 + signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread
    (the first one only: later ones are ignored so the cleanup it starts can finish)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        for other in SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def confined(target: Path, root: str | os.PathLike[str] | None) -> Path:
    """``target`` with symlinks and ``..`` resolved; refused when it leaves ``root``."""
    try:
        resolved = target.resolve()
        folder = Path(root).resolve() if root is not None else None
    except (OSError, RuntimeError) as error:  # a symlink loop
        raise UsageError(f"cannot write {target}: {getattr(error, 'strerror', None) or error}") from None
    if folder is None:
        return resolved
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
