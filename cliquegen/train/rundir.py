"""A run folder: its lock, refusing to replace an earlier run, checkpoints, metrics files,
TensorBoard events and curves, all written inside the folder's root (links resolved first)
and atomically.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from .._io import atomic_write, confined, torch_save_atomic
from ..checkpoint.files import info_metadata, save_safetensors_file
from ..checkpoint.info import ModelInfo
from ..checkpoint.load import load_weights_file
from ..errors import UsageError, import_extra, printable
from .config import (
    CURVES,
    HISTORY_COLUMNS,
    LAST,
    METRICS,
    METRICS_CSV,
    RESUME_KEYS,
    RUN_FILES,
    SR_HISTORY_COLUMNS,
    TENSORBOARD,
    TrainConfig,
)
from .distributed import Context, broadcast
from .figures import plot_curves
from .recipes import milestones as milestones

try:
    import fcntl
except ImportError:  # not on Windows: folder_lock falls back to an O_EXCL lock file
    fcntl = None  # type: ignore[assignment]

LOCK = ".cliquegen.lock"
_NOFOLLOW, _CLOEXEC = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_CLOEXEC", 0)

#: The files TensorBoard's writer names its event files with.
EVENTS = "events.out.tfevents.*"


def say(console: Console, text: str) -> None:
    """Print ``text``, which holds user text (paths, names), as it is: no rich markup or emoji
    codes are read in it (``m[bold].pt`` stays ``m[bold].pt``), control characters escaped."""
    console.print(printable(text, keep_newlines=True), markup=False, emoji=False, highlight=False)


def make_folder(folder: Path, root: Path) -> None:
    """Create ``folder`` (and its parents) once it is known to lie inside ``root``."""
    if folder != root:
        confined(folder, root)  # a link planted in a sweep's folder must not take the run elsewhere
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"cannot create {folder}: it is a file, not a folder") from None
    except OSError as error:
        raise UsageError(f"cannot create {folder}: {error.strerror or error}") from None
    if not folder.is_dir():
        raise UsageError(f"cannot create {folder}: it is a file, not a folder")


@contextlib.contextmanager
def folder_lock(folder: Path, root: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while inside, so a second ``train`` or ``sweep`` on the same
    folder is refused instead of mixing its files with this one's.

    The lock is the file ``folder/.cliquegen.lock``, which names its holder's pid.  Where
    ``flock`` exists the lock is an flock on that file, which the kernel drops when its holder
    dies; elsewhere the file itself is the lock, and one naming a process that no longer runs
    is taken over.  Either way a lock left by a killed process blocks no one.  The holder
    removes the file when it is done."""
    path = folder / LOCK
    confined(path, root)  # a link in its place to elsewhere is refused; one inside, by O_NOFOLLOW
    fd = _flock(path, folder) if fcntl is not None else _exclusive(path, folder)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _in_use(folder: Path, holder: str) -> UsageError:
    return UsageError(
        f"{folder} is in use by another cliquegen train or sweep{holder}; wait for it to finish, "
        "or choose another --out"
    )


def _open_lock(path: Path, folder: Path, flags: int) -> int:
    try:  # O_NOFOLLOW: a link planted in place of the lock file is refused, not followed
        return os.open(path, flags | os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
    except FileExistsError:
        raise
    except OSError as error:
        raise UsageError(f"cannot lock {folder} ({path.name}): {error.strerror or error}") from None


def _flock(path: Path, folder: Path) -> int:
    while True:
        fd = _open_lock(path, folder, 0)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _pid(fd)
            os.close(fd)
            raise _in_use(folder, f" (pid {pid})" if pid is not None and _alive(pid) else "") from None
        try:  # the holder before us may have removed the file just before we locked it
            now = os.stat(path, follow_symlinks=False)
        except OSError:
            now = None
        opened = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino):
            return fd
        os.close(fd)


def _exclusive(path: Path, folder: Path) -> int:
    for _ in range(2):
        try:
            return _open_lock(path, folder, os.O_EXCL)
        except FileExistsError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            continue  # removed meanwhile: try again
        pid, age = _pid(fd), time.time() - os.fstat(fd).st_mtime
        os.close(fd)
        if (pid is None and age < 10) or (pid is not None and _alive(pid)):  # no pid yet: being written
            raise _in_use(folder, f" (pid {pid})" if pid is not None else "")
        with contextlib.suppress(OSError):  # the lock of a process that no longer runs
            path.unlink()
    raise _in_use(folder, "")


def _pid(fd: int) -> int | None:
    """The pid a lock file names, if it names one."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


def save_checkpoint(path: Path, checkpoint: dict[str, Any], root: Path | None = None) -> None:
    torch_save_atomic(checkpoint, path, root=root)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by ``cliquegen train`` (or any plain state_dict), safely:
    weights-only loading, with the size limit of weights files."""
    return load_weights_file(path)


def state_dict_hash(model: nn.Module) -> str:
    """sha256 over the names and bytes of every tensor in the state_dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def metrics_csv(history: list[dict[str, Any]], columns: tuple[str, ...] = HISTORY_COLUMNS) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def earlier_run(out: Path) -> list[str]:
    """The files of an earlier run in ``out``: those of RUN_FILES, and TensorBoard events."""
    found = [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]
    board = out / TENSORBOARD
    if board.is_symlink() or (board.is_dir() and any(board.glob(EVENTS))):
        found.append(f"{TENSORBOARD}/")
    return found


def prepare_out(out: Path, force: bool) -> None:
    """A new run never replaces an earlier one unless forced: then its files go first, its
    TensorBoard events included, so the new run's curves are not mixed with the old ones."""
    existing = earlier_run(out)
    if existing and not force:
        raise UsageError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    board = out / TENSORBOARD
    doomed = [out / name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]
    if board.is_dir() and not board.is_symlink():  # a link is left alone (and writing there refused)
        doomed += sorted(board.glob(EVENTS))
    for path in doomed:
        try:
            path.unlink()
        except OSError as error:
            raise UsageError(f"--force: cannot remove {path}: {error.strerror or error}") from None


def check_resumable(out: Path, config: TrainConfig, settings: dict[str, Any], ctx: Context) -> None:
    """``--resume`` with other settings than the run's, refused before any data is loaded, from
    its metrics.json.  A finished run asked for more epochs is told how to train on: its
    learning-rate steps depend on the epochs, so it continues as a new run from its weights."""
    if not config.resume:
        return
    metrics = None
    if ctx.main and (out / METRICS).is_file():
        try:
            metrics = json.loads((out / METRICS).read_text())
        except (OSError, ValueError):
            metrics = None  # the checkpoint's own check decides
    metrics = broadcast(metrics, ctx)
    if not isinstance(metrics, dict):
        return
    changed = [key for key in RESUME_KEYS if key in metrics and metrics[key] != settings[key]]
    if not changed:
        return
    was = ", ".join(f"{key}={metrics[key]!r}" for key in changed)
    done = metrics.get("epochs_done")
    if set(changed) <= {"epochs", "milestones"} and done == metrics.get("epochs"):
        history = metrics.get("history") or [{}]
        lr = history[-1].get("lr", settings["lr"])
        raise UsageError(
            f"--resume: {out} finished its {done} epoch{'s' * (done != 1)}, and a run keeps its "
            f"schedule (its learning-rate steps follow --epochs). To train on, start a new run from "
            f"its weights: cliquegen train SPEC --finetune {out / LAST} --epochs N --lr {lr:g} --out NEW_DIR "
            f"(with the other options of this run)"
        )
    raise UsageError(f"--resume: {out} holds a run with {was}; resume with the same settings")


def save_best_safetensors(path: Path, state: dict[str, torch.Tensor], info: ModelInfo, root: Path) -> None:
    save_safetensors_file(state, confined(path, root), metadata=info_metadata(info))


def tensorboard_writer(out: Path, root: Path, config: TrainConfig, ctx: Context, start: int):
    """A SummaryWriter in OUT/tensorboard (rank 0, --tensorboard), confined to ``root``."""
    if not (config.tensorboard and ctx.main):
        return None
    module = import_extra("torch.utils.tensorboard", "tensorboard", "--tensorboard")
    folder = out / TENSORBOARD
    confined(folder / "events", root)  # a link planted in OUT must not send the events elsewhere
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write TensorBoard events: {folder} is a file, not a folder")
    # a resumed run first drops the events of epochs it is about to redo
    return module.SummaryWriter(str(folder), purge_step=start + 1 if start else None)


def draw_run_curves(
    history: list[dict[str, Any]], out: Path, title: str, console: Console, root: Path, plot=plot_curves
) -> None:
    try:
        plot(history, out / CURVES, title, root=root)
    except UsageError as error:  # matplotlib missing: the run itself succeeded
        say(console, f"note: no {CURVES}: {error}")


def write_metrics(out: Path, metrics: dict[str, Any], root: Path) -> None:
    """metrics.json (strict JSON: a NaN is a bug, never written) and metrics.csv."""
    atomic_write(out / METRICS, json.dumps(metrics, indent=2, allow_nan=False) + "\n", root=root)
    columns = SR_HISTORY_COLUMNS if metrics.get("task") == "super-resolution" else HISTORY_COLUMNS
    atomic_write(out / METRICS_CSV, metrics_csv(metrics["history"], columns), root=root)


def run_metrics(
    config: TrainConfig,
    settings: dict[str, Any],
    data_name: str,
    ctx: Context,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    spec_sha256: str,
) -> dict[str, Any]:
    options = {k: v for k, v in asdict(config).items() if k in ("workers", "device", "compile")}
    return {
        **settings,
        **options,
        "spec_sha256": spec_sha256,  # with the settings: the run's identity (config.run_identity)
        "data": data_name,
        "world_size": ctx.world_size,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "history": history,
        "best": best,
    }
