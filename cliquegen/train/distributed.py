"""One process or many (torchrun): where this process stands, its device, and the collective
steps of a run (RNG states as plain values, buffer averaging, gather and broadcast).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import fx, nn

from ..errors import CliqueGenError, UsageError
from .config import DEVICES
from .recipes import milestones as milestones


@dataclass(frozen=True)
class Context:
    """Where this process stands in the (possibly one-process) job."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def use_cuda(device: str) -> bool:
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here; use --device cpu")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def setup(device: str = "auto") -> Context:
    """Join the torchrun job described by the environment (WORLD_SIZE > 1), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = use_cuda(device)
    if world_size <= 1:
        return Context(0, 1, torch.device("cuda" if cuda else "cpu"), owns_group=False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), where, owns_group=owns)


def rng_state(ctx: Context) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if ctx.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return state


def set_rng_state(state: dict[str, Any], ctx: Context) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if ctx.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], ctx.device)


def loader_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """The seed of one DataLoader's workers in one epoch: a function of the run's seed, the
    epoch and the rank only, so a resumed run's workers draw what an unbroken run's drew."""
    key = f"{seed}:{epoch}:{rank}:{stream}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def has_unused_parameters(model: nn.Module) -> bool:
    """Whether some parameter takes no part in the forward pass (DDP must then look for it)."""
    if not isinstance(model, fx.GraphModule):
        return True
    used: set[str] = set()
    for node in model.graph.nodes:
        if node.op == "get_attr":
            used.add(node.target)
        elif node.op == "call_module":
            used.update(f"{node.target}.{n}" for n, _ in model.get_submodule(node.target).named_parameters())
    return any(name not in used for name, _ in model.named_parameters())


def average_buffers(model: nn.Module, ctx: Context) -> None:
    """Average BatchNorm running statistics over the ranks, so every rank holds the same model."""
    if not ctx.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= ctx.world_size


def gather(value: Any, ctx: Context) -> list[Any]:
    if not ctx.distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast(value: Any, ctx: Context) -> Any:
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank0(decide: Callable[[], Any], ctx: Context) -> Any:
    """``decide()`` on rank 0 (which alone sees the run folder), its result shared with every
    rank; an error of the user's there stops every rank, so none waits for the others forever
    (rank 0 raises it as it was, the others as a UsageError with its message)."""
    outcome: Any = None
    failure: CliqueGenError | None = None
    if ctx.main:
        try:
            outcome = ("ok", decide())
        except CliqueGenError as error:
            failure, outcome = error, ("error", str(error))
    outcome = broadcast(outcome, ctx)
    if failure is not None:
        raise failure
    if outcome[0] == "error":
        raise UsageError(outcome[1])
    return outcome[1]
