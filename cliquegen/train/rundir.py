"""A run folder: refusing to replace an earlier run, checkpoints, metrics files, TensorBoard
events and curves, all written inside the folder (links resolved first) and atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from .._io import atomic_write, confined, torch_save_atomic
from ..checkpoint.info import ModelInfo
from ..checkpoint.load import load_weights_file
from ..errors import UsageError, import_extra
from .config import (
    CURVES,
    HISTORY_COLUMNS,
    LAST,
    METRICS,
    METRICS_CSV,
    RESUME_KEYS,
    RUN_FILES,
    TENSORBOARD,
    TrainConfig,
)
from .distributed import Context, broadcast
from .figures import plot_curves
from .recipes import milestones as milestones


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


def metrics_csv(history: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()


def prepare_out(out: Path, config: TrainConfig, ctx: Context) -> None:
    """A new run never replaces an earlier one unless forced (then its files go first)."""
    if config.resume:
        return
    existing = [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]
    existing = broadcast(existing if ctx.main else None, ctx)
    if existing and not config.force:
        raise UsageError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--force to replace it, or choose another --out"
        )
    if ctx.main:
        for name in existing:
            try:
                (out / name).unlink()
            except OSError as error:
                raise UsageError(f"--force: cannot remove {out / name}: {error.strerror or error}") from None


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


def save_best_safetensors(path: Path, state: dict[str, torch.Tensor], info: ModelInfo, out: Path) -> None:
    from ..checkpoint.files import info_metadata, save_safetensors_file

    save_safetensors_file(state, confined(path, out), metadata=info_metadata(info))


def tensorboard_writer(out: Path, config: TrainConfig, ctx: Context, start: int):
    """A SummaryWriter in OUT/tensorboard (rank 0, --tensorboard), confined to OUT."""
    if not (config.tensorboard and ctx.main):
        return None
    module = import_extra("torch.utils.tensorboard", "tensorboard", "--tensorboard")
    folder = out / TENSORBOARD
    confined(folder / "events", out)  # a link planted in OUT must not send the events elsewhere
    # a resumed run first drops the events of epochs it is about to redo
    return module.SummaryWriter(str(folder), purge_step=start + 1 if start else None)


def draw_run_curves(history: list[dict[str, Any]], out: Path, title: str, console: Console) -> None:
    try:
        plot_curves(history, out / CURVES, title, root=out)
    except UsageError as error:  # matplotlib missing: the run itself succeeded
        console.print(f"note: no {CURVES}: {error}")


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    atomic_write(out / METRICS, json.dumps(metrics, indent=2) + "\n", root=out)
    atomic_write(out / METRICS_CSV, metrics_csv(metrics["history"]), root=out)


def run_metrics(
    config: TrainConfig,
    settings: dict[str, Any],
    data_name: str,
    ctx: Context,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> dict[str, Any]:
    options = {k: v for k, v in asdict(config).items() if k in ("workers", "device", "compile")}
    return {
        **settings,
        **options,
        "data": data_name,
        "world_size": ctx.world_size,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "test_top5": history[-1]["test_top5"] if history else None,
        "best": best,
    }
