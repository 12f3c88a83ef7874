"""Continuing a run from its ``last.pt``: the file is checked field by field before any of it
is loaded, so a damaged or foreign file (a ``best.pt``, a bare state_dict, a hand-edited
checkpoint) is refused with the file and the field named, never half-loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from .config import run_identity
from .results import check_metrics
from .rundir import load_checkpoint

DAMAGED = "the checkpoint is damaged: restore it, or move it away to train the run from the start"

#: What a python ``random`` state holds: version 3, 624 words and a position, a cached gauss.
_PYTHON_WORDS = 625


def read_last(path: Path) -> dict[str, Any]:
    """``path`` (a run's ``last.pt``), loaded safely and checked to be a run's training state."""
    checkpoint = load_checkpoint(path)
    if "optimizer" not in checkpoint or "rng" not in checkpoint:
        held = "only weights (as best.pt does)" if "model" in checkpoint else "a bare state_dict"
        raise UsageError(
            f"{path} holds {held}, not the training state a run continues from (optimizer, "
            "scheduler, RNG states, history) that cliquegen train writes to last.pt; to start a new "
            "run from these weights, move the file away and pass it to --finetune"
        )
    epoch = checkpoint.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise damaged(path, "epoch", "a whole number of epochs, at least 1", epoch)
    for key in ("settings", "model", "optimizer", "scheduler", "best"):
        if not isinstance(checkpoint.get(key), Mapping):
            raise damaged(path, key, "a dictionary", checkpoint.get(key))
    history = checkpoint.get("history")
    if not isinstance(history, list):
        raise damaged(path, "history", "a list of epoch records", history)
    if len(history) != epoch:
        raise damaged(path, "history", f"{epoch} epoch records long (one per epoch done)", len(history))
    last = history[-1] if isinstance(history[-1], dict) else {}
    metrics = {
        "history": history,
        "epochs_done": epoch,
        "test_accuracy": last.get("test_accuracy"),
        "test_psnr_y": last.get("test_psnr_y"),
        "best": checkpoint["best"],
    }
    check_metrics(metrics, path, "the last.pt cliquegen train writes")
    check_rng(checkpoint.get("rng"), path)
    if "scaler" in checkpoint and not isinstance(checkpoint["scaler"], Mapping):
        raise damaged(path, "scaler", "a dictionary", checkpoint["scaler"])
    return checkpoint


def recorded_identity(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The identity (:func:`~cliquegen.train.config.run_identity`) a ``last.pt`` records."""
    info = checkpoint.get("info")
    sha = info.get("spec_sha256") if isinstance(info, Mapping) else None
    return run_identity(sha if isinstance(sha, str) else None, checkpoint["settings"])


def damaged(path: Path, where: str, need: str, value: Any) -> UsageError:
    shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:60]}..."
    if isinstance(value, torch.Tensor):
        shown = f"a {value.dtype} tensor of shape {list(value.shape)}"
    return UsageError(f"{path}: {where} must be {need}, found {shown}; {DAMAGED}")


def check_rng(rng: Any, path: Path) -> None:
    """Every rank's RNG states, as :func:`~cliquegen.train.distributed.rng_state` writes them."""
    if not isinstance(rng, list) or not rng:
        raise damaged(path, "rng", "a list of RNG states, one per process", rng)
    words = torch.get_rng_state().numel()
    for rank, state in enumerate(rng):
        where = f"rng[{rank}]"
        if not isinstance(state, Mapping):
            raise damaged(path, where, "a dictionary", state)
        for key in ("torch", *(["cuda"] if "cuda" in state else [])):
            tensor = state.get(key)
            if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 1:
                raise damaged(path, f"{where}.{key}", "a 1-d uint8 tensor", tensor)
            if key == "torch" and tensor.numel() != words:
                raise damaged(path, f"{where}.torch", f"{words} bytes long", f"{tensor.numel()} bytes")
        python = state.get("python")
        ok = isinstance(python, list | tuple) and len(python) == 3
        ok = ok and python[0] == 3 and isinstance(python[1], list | tuple) and len(python[1]) == _PYTHON_WORDS
        ok = ok and all(type(w) is int and 0 <= w < 2**32 for w in python[1]) and python[1][-1] <= 624
        ok = ok and (python[2] is None or (type(python[2]) is float and math.isfinite(python[2])))
        if not ok:
            raise damaged(path, f"{where}.python", "the state of Python's random module", python)


def check_like(loaded: Any, fresh: Any, where: str, path: Path) -> None:
    """``loaded`` (from the checkpoint) has the structure of ``fresh`` (the state_dict of the
    object it is loaded into): the same keys, lengths, kinds of values, tensor shapes and
    dtypes, and finite numbers.  torch's ``load_state_dict`` of a scheduler takes any dict."""
    if isinstance(fresh, Mapping):
        if not isinstance(loaded, Mapping) or set(loaded) != set(fresh):
            keys = sorted(map(str, fresh)) if len(fresh) <= 8 else f"{len(fresh)} keys"
            raise damaged(path, where, f"a dictionary with the keys {keys}", loaded)
        for key in fresh:
            check_like(loaded[key], fresh[key], f"{where}.{key}", path)
    elif isinstance(fresh, list | tuple):
        if not isinstance(loaded, list | tuple) or len(loaded) != len(fresh):
            raise damaged(path, where, f"a list of {len(fresh)}", loaded)
        for index, (old, new) in enumerate(zip(loaded, fresh, strict=True)):
            check_like(old, new, f"{where}[{index}]", path)
    elif isinstance(fresh, torch.Tensor):
        if not isinstance(loaded, torch.Tensor) or loaded.dtype != fresh.dtype or loaded.shape != fresh.shape:
            raise damaged(path, where, f"a {fresh.dtype} tensor of shape {list(fresh.shape)}", loaded)
    elif isinstance(fresh, bool) or fresh is None or isinstance(fresh, str):
        if type(loaded) is not type(fresh):
            raise damaged(path, where, f"{fresh!r} or another {type(fresh).__name__}", loaded)
    elif isinstance(fresh, int | float) and (
        isinstance(loaded, bool) or not isinstance(loaded, int | float) or not math.isfinite(loaded)
    ):
        raise damaged(path, where, "a finite number", loaded)


def check_optimizer(loaded: Mapping[str, Any], optimizer: torch.optim.Optimizer, path: Path) -> None:
    """An optimizer state_dict that fits ``optimizer``: its groups' settings, and per
    parameter only tensors of that parameter's shape (or scalars, such as Adam's step)."""
    fresh = optimizer.state_dict()
    if set(loaded) != set(fresh) or not isinstance(loaded.get("state"), Mapping):
        raise damaged(path, "optimizer", "an optimizer state_dict (state, param_groups)", sorted(loaded))
    check_like(loaded["param_groups"], fresh["param_groups"], "optimizer.param_groups", path)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for index, state in loaded["state"].items():
        where = f"optimizer.state[{index!r}]"
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(parameters):
            raise damaged(
                path, "optimizer.state", f"keyed by parameter numbers 0..{len(parameters) - 1}", index
            )
        if not isinstance(state, Mapping):
            raise damaged(path, where, "a dictionary", state)
        shape = parameters[index].shape
        for name, value in state.items():
            if value is None:
                continue
            if not (isinstance(value, torch.Tensor) and value.is_floating_point()) or (
                value.dim() and value.shape != shape
            ):
                raise damaged(path, f"{where}.{name}", f"a float tensor of shape {list(shape)}", value)


def load_state(target: Any, state: Mapping[str, Any], where: str, path: Path) -> None:
    """``target.load_state_dict(state)``, whatever torch raises on a damaged state reported as
    damage of ``where`` in ``path``."""
    try:
        target.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
        raise UsageError(
            f"{path}: {where} does not fit this run ({type(error).__name__}: {str(error)[:200]}); {DAMAGED}"
        ) from None
