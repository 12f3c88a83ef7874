"""``cliquegen train``: the paper's recipe on one process or many (torchrun + DDP).

Recipe: SGD with momentum 0.9 and weight decay 1e-4; the learning rate is divided by 10 at
50% and 75% of the epochs (MultiStepLR).  ``batch_size`` is the global batch: under torchrun
each of the N processes takes ``batch_size / N`` images per step, so a run on N processes
follows the same schedule as a run on one.

Every epoch, rank 0 writes ``OUT/last.pt`` (everything needed to continue exactly: epoch,
model, optimizer, scheduler and every rank's RNG states), ``OUT/best.pt`` when the test
accuracy improved, and ``OUT/metrics.json``.  Files are written to a temporary name and
moved into place, so a killed run never leaves a half-written checkpoint; checkpoints hold
only tensors and plain Python values and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import fx, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ._io import atomic_write, torch_save_atomic
from .data import load_data
from .errors import UsageError
from .registry import create_model, resolve_spec
from .weights import load_weights_file

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.json"
#: Settings that must not change when a run is resumed.
RESUME_KEYS = ("spec", "data", "epochs", "batch_size", "lr", "momentum", "weight_decay", "seed", "subset")


@dataclass
class TrainConfig:
    spec: str
    data: str
    epochs: int
    out: str
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    workers: int = 0
    resume: bool = False
    subset: int | None = None  # use only the first N training and N test images
    stop_after: int | None = None  # end this run once this many epochs are done (resume later)


def milestones(epochs: int) -> list[int]:
    """Epochs after which the learning rate drops by 10x: 50% and 75% of the run."""
    return [epochs // 2, (3 * epochs) // 4]


@dataclass(frozen=True)
class _Context:
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


def _setup() -> _Context:
    """Join the torchrun job described by the environment (WORLD_SIZE > 1), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size <= 1:
        return _Context(0, 1, torch.device("cuda" if cuda else "cpu"), owns_group=False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    return _Context(dist.get_rank(), dist.get_world_size(), device, owns_group=owns)


# --- RNG states as tensors and plain values, so checkpoints load with weights_only=True --------


def _rng_state(ctx: _Context) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if ctx.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return state


def _set_rng_state(state: dict[str, Any], ctx: _Context) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if ctx.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], ctx.device)


# --- files --------------------------------------------------------------------------------------


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    torch_save_atomic(checkpoint, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by ``cliquegen train`` (or any plain state_dict), safely:
    weights-only loading, with the size limit of weights files."""
    return load_weights_file(path)


def _write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2) + "\n")


def state_dict_hash(model: nn.Module) -> str:
    """sha256 over the names and bytes of every tensor in the state_dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- the loop -----------------------------------------------------------------------------------


def _has_unused_parameters(model: nn.Module) -> bool:
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


def _evaluate(model: nn.Module, dataset: Dataset, ctx: _Context, batch_size: int, workers: int) -> float:
    """Top-1 accuracy on the whole test set; each rank scores every world_size-th image."""
    shard = Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers)
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(ctx.device), labels.to(ctx.device)
            counts[0] += (model(images).argmax(dim=1) == labels).sum()
            counts[1] += len(labels)
    if ctx.distributed:
        dist.all_reduce(counts)
    return float(counts[0] / counts[1])


def _average_buffers(model: nn.Module, ctx: _Context) -> None:
    """Average BatchNorm running statistics over the ranks, so every rank holds the same model."""
    if not ctx.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= ctx.world_size


def _gather(value: Any, ctx: _Context) -> list[Any]:
    if not ctx.distributed:
        return [value]
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    return values


def _broadcast(value: Any, ctx: _Context) -> Any:
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train(config: TrainConfig, console: Console | None = None) -> dict[str, Any]:
    """Train ``config.spec`` on ``config.data``; returns the metrics that rank 0 writes."""
    ctx = _setup()
    try:
        metrics = _train(config, ctx, console or Console(highlight=False))
        if ctx.distributed:  # rank 0 is still writing files; tear the group down together
            dist.barrier()
        return metrics
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _check(config: TrainConfig, ctx: _Context) -> None:
    if config.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {config.epochs}")
    if config.batch_size < ctx.world_size or config.batch_size % ctx.world_size:
        raise UsageError(
            f"--batch-size {config.batch_size} is the global batch and must be a multiple of the "
            f"{ctx.world_size} processes"
        )
    if config.lr <= 0:
        raise UsageError(f"--lr must be positive, got {config.lr}")
    if config.subset is not None and config.subset < 1:
        raise UsageError(f"--subset must be at least 1, got {config.subset}")


def _train(config: TrainConfig, ctx: _Context, console: Console) -> dict[str, Any]:
    _check(config, ctx)
    spec = resolve_spec(config.spec)
    data = load_data(config.data, spec)
    train_set, test_set = data.train, data.test
    if config.subset is not None:
        train_set = Subset(train_set, range(min(config.subset, len(train_set))))
        test_set = Subset(test_set, range(min(config.subset, len(test_set))))
    out = Path(config.out)
    last = out / LAST

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    random.seed(config.seed)
    model = create_model(spec).to(ctx.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones(config.epochs), gamma=0.1)
    settings = {key: getattr(config, key) for key in RESUME_KEYS} | {"spec": spec.name}
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "test_accuracy": -1.0}
    start = 0

    if config.resume:
        checkpoint = _broadcast(load_checkpoint(last) if ctx.main and last.exists() else None, ctx)
        if checkpoint is None:
            raise UsageError(f"--resume: {last} does not exist; start without --resume")
        changed = [k for k in RESUME_KEYS if checkpoint["settings"].get(k) != settings[k]]
        if changed:
            was = ", ".join(f"{k}={checkpoint['settings'].get(k)!r}" for k in changed)
            raise UsageError(f"--resume: {last} was written with {was}; resume with the same settings")
        model.load_state_dict(checkpoint["model"], strict=True)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start, history, best = checkpoint["epoch"], checkpoint["history"], checkpoint["best"]
        rng = checkpoint["rng"]
        if len(rng) == ctx.world_size:
            _set_rng_state(rng[ctx.rank], ctx)
        else:  # a different number of processes: continue, but not bit for bit
            _set_rng_state(rng[0], ctx)
            torch.manual_seed(config.seed + 7919 * (start + 1) + ctx.rank)
            if ctx.main:
                console.print(f"note: resuming a {len(rng)}-process run on {ctx.world_size} processes")
    else:
        if _broadcast(ctx.main and last.exists(), ctx):
            raise UsageError(f"{out} already holds a run ({last}); pass --resume or choose another --out")
        if ctx.rank:  # different dropout masks on every rank
            torch.manual_seed(config.seed + ctx.rank)
            random.seed(config.seed + ctx.rank)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)

    net: nn.Module = model
    if ctx.distributed:
        net = DistributedDataParallel(
            model,
            device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
            find_unused_parameters=_has_unused_parameters(model),
        )
    sampler = DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    per_rank = config.batch_size // ctx.world_size
    loader = DataLoader(
        train_set,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=config.workers > 0,
    )
    end = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    if ctx.main and start < end:
        console.print(
            f"training {spec.name} on {data.name}: {len(train_set)} train / {len(test_set)} test images, "
            f"{ctx.world_size} process{'es' if ctx.distributed else ''} on {ctx.device.type}, "
            f"epochs {start + 1}..{end} of {config.epochs}"
        )
    started = time.perf_counter()
    for epoch in range(start, end):
        tic = time.perf_counter()
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        net.train()
        totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # loss sum, images
        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{config.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (ctx.main and console.is_terminal),
        )
        with progress:
            task = progress.add_task("train", total=len(loader), loss=float("nan"))
            for images, labels in loader:
                images = images.to(ctx.device, non_blocking=True)
                labels = labels.to(ctx.device, non_blocking=True)
                loss = F.cross_entropy(net(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                totals += torch.stack([loss.detach().double() * len(labels), totals.new_tensor(len(labels))])
                progress.update(task, advance=1, loss=float(totals[0] / totals[1]))
        scheduler.step()
        if ctx.distributed:
            dist.all_reduce(totals)
        _average_buffers(model, ctx)
        accuracy = _evaluate(model, test_set, ctx, per_rank, config.workers)
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(totals[0] / totals[1]),
            "test_accuracy": accuracy,
            "seconds": round(time.perf_counter() - tic, 3),
        }
        history.append(record)
        improved = accuracy > best["test_accuracy"]
        if improved:
            best = {"epoch": epoch + 1, "test_accuracy": accuracy}
        rng = _gather(_rng_state(ctx), ctx)
        if ctx.main:
            checkpoint = {
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "history": history,
                "best": best,
                "settings": settings,
                "world_size": ctx.world_size,
            }
            save_checkpoint(last, checkpoint)
            if improved:
                save_checkpoint(out / BEST, {"epoch": epoch + 1, "model": checkpoint["model"], "best": best})
            _write_json(out / METRICS, _metrics(config, spec.name, data.name, ctx, history, best))
            console.print(
                f"epoch {epoch + 1}/{config.epochs}  lr {lr:.4g}  loss {record['train_loss']:.4f}  "
                f"test accuracy {100 * accuracy:.2f}%  {record['seconds']:.1f}s"
            )

    hashes = _gather(state_dict_hash(model), ctx)
    metrics = _metrics(config, spec.name, data.name, ctx, history, best)
    metrics["state_dict_sha256"] = hashes
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / METRICS, metrics)
        if history:
            console.print(
                f"test accuracy {100 * history[-1]['test_accuracy']:.2f}% after {history[-1]['epoch']} "
                f"epochs (best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']}); "
                f"checkpoints and metrics in {out}"
            )
    return metrics


def _metrics(
    config: TrainConfig,
    spec_name: str,
    data_name: str,
    ctx: _Context,
    history: list[dict[str, Any]],
    best: dict[str, Any],
) -> dict[str, Any]:
    settings = asdict(config) | {"spec": spec_name, "data": data_name}
    for key in ("out", "resume", "stop_after"):
        settings.pop(key)
    return {
        **settings,
        "world_size": ctx.world_size,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "best": best,
    }
