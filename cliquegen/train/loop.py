"""``cliquegen train``: the authors' recipes on one process or many (torchrun + DDP).

:func:`run` is the entry point (``cliquegen train`` and ``cliquegen sweep`` call it): it takes a
:class:`TrainConfig` and returns a :class:`TrainResult`.  Settings left as ``None`` come from
the recipe (:mod:`cliquegen.recipes`, ``paper-cifar`` by default).  ``batch_size`` is the
global batch: under torchrun each of the N processes takes ``batch_size / N`` images per step,
so a run on N processes follows the same schedule as a run on one.

Every epoch, rank 0 writes ``OUT/last.pt`` (everything needed to continue exactly: epoch,
model, optimizer, scheduler, gradient scaler and every rank's RNG states), ``OUT/best.pt`` when
the test accuracy improved, ``OUT/metrics.json`` and ``OUT/metrics.csv``; at the end
``OUT/curves.png``.  Both checkpoints carry the model's :class:`~cliquegen.checkpoint.ModelInfo`
(spec text and sha256, classes, normalisation, input size).  Files are written to a temporary
name inside ``OUT`` and moved into place, never outside ``OUT`` (links are resolved first), so
a killed run never leaves a half-written file; checkpoints hold only tensors and plain Python
values and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..checkpoint.info import ModelInfo, spec_record
from ..checkpoint.load import load_weights_into
from ..data.base import ImageData
from ..data.sets import fetch_data
from ..errors import UsageError
from ..models import create_model
from ..spec.model import Spec
from ..spec.shipped import apply_overrides, resolve_spec
from .config import (
    AMP_DTYPES,
    BEST,
    BEST_SAFETENSORS,
    LAST,
    RESUME_KEYS,
    DivergedError,
    TrainConfig,
    TrainResult,
    identity_changes,
    run_identity,
)
from .config import HISTORY_COLUMNS as HISTORY_COLUMNS  # re-exported: the old names
from .config import resolve_settings as resolve_settings
from .distributed import (
    Context,
    average_buffers,
    gather,
    has_unused_parameters,
    loader_seed,
    on_rank0,
    rng_state,
    set_rng_state,
    setup,
)
from .evaluate import evaluate_model
from .recipes import make_optimization
from .recipes import milestones as milestones
from .resume import check_like, check_optimizer, damaged, load_state, read_last, recorded_identity
from .rundir import (
    check_resumable,
    draw_run_curves,
    folder_lock,
    load_checkpoint,
    make_folder,
    prepare_out,
    run_metrics,
    save_best_safetensors,
    save_checkpoint,
    say,
    state_dict_hash,
    tensorboard_writer,
    write_metrics,
)
from .sr_task import SuperResolution, task_for, task_settings
from .task import Classification, initial_best


def run(config: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train ``config.spec`` on ``config.data``; rank 0 writes the run folder ``config.out``."""
    ctx = setup(config.device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, TensorBoard's writer
            result = _train(config, ctx, console or Console(highlight=False), held)
        if ctx.distributed:  # rank 0 is still writing files; tear the group down together
            dist.barrier()
        return result
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def train(config: TrainConfig, console: Console | None = None) -> dict[str, Any]:
    """:func:`run`, returning only the metrics that rank 0 writes to metrics.json."""
    return run(config, console).metrics


def _load_finetune(model: nn.Module, config: TrainConfig, spec, console: Console, main: bool) -> None:
    """Start from ``config.finetune``'s weights; a fresh classifier when its shape differs."""
    checkpoint = load_checkpoint(config.finetune)
    state = checkpoint["model"] if isinstance(checkpoint.get("model"), dict) else checkpoint
    ours = model.state_dict()
    head = [key for key in ours if key.startswith("classifier.")]
    if head and all(key in state for key in head) and any(state[k].shape != ours[k].shape for k in head):
        old = state[head[0]].shape[0]
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")} | {
            k: ours[k] for k in head
        }
        if main:
            say(
                console,
                f"fine-tuning with a new classifier: {spec.num_classes} classes (the weights had {old})",
            )
    wrapped = {**checkpoint, "model": state} if isinstance(checkpoint.get("model"), dict) else state
    load_weights_into(model, wrapped, spec, config.finetune)


# --- the phases of a run -------------------------------------------------------------------------


@dataclass
class _Run:
    """One run's state, handed from phase to phase."""

    config: TrainConfig
    ctx: Context
    console: Console
    spec: Spec
    settings: dict[str, Any]
    data: ImageData
    train_set: Dataset
    test_set: Dataset
    info: ModelInfo
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    task: Classification | SuperResolution
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    start: int = 0  # epochs done before this process started
    writer: Any = None  # TensorBoard's SummaryWriter, rank 0 with --tensorboard

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def root(self) -> Path:
        """Every write of the run stays inside this folder."""
        return Path(self.config.root) if self.config.root is not None else self.out

    @property
    def identity(self) -> dict[str, Any]:
        return run_identity(self.info.spec_sha256, self.settings)

    def metrics(self) -> dict[str, Any]:
        return run_metrics(
            self.config, self.settings, self.data.name, self.ctx, self.history, self.best,
            self.info.spec_sha256,
        ) | self.task.summary(self.history)  # fmt: skip


def _train(config: TrainConfig, ctx: Context, console: Console, held: contextlib.ExitStack) -> TrainResult:
    run = _set_up(config, ctx, console)
    _open_folder(run, held)
    if config.resume:
        _resume(run)
    elif ctx.rank:  # different dropout masks on every rank
        torch.manual_seed(config.seed + ctx.rank)
        random.seed(config.seed + ctx.rank)
    loader, sampler, generator = _loader(run)
    net = _wrap(run)
    run.writer = tensorboard_writer(run.out, run.root, config, ctx, run.start)
    if run.writer is not None:
        held.callback(run.writer.close)
    epochs = run.settings["epochs"]
    end = epochs if config.stop_after is None else min(epochs, config.stop_after)
    _announce(run, end)
    started = time.perf_counter()
    for epoch in range(run.start, end):
        tic = time.perf_counter()
        sampler.set_epoch(epoch)
        generator.manual_seed(loader_seed(config.seed, epoch, ctx.rank, 0))
        lr = run.optimizer.param_groups[0]["lr"]
        totals = _train_epoch(run, net, loader, epoch)
        record = _validate(run, epoch, totals, lr, tic)
        _check_finite(run, record)
        _save_epoch(run, record)
    return _finish(run, started)


def _set_up(config: TrainConfig, ctx: Context, console: Console) -> _Run:
    """Settings, data, the model's info, the model, its optimizer and scheduler: everything
    that can be refused before the run folder is touched."""
    base_spec = resolve_spec(config.spec)
    task = task_for(base_spec)
    settings = task_settings(config, base_spec, ctx.world_size)
    check_resumable(Path(config.out), config, settings, ctx)  # before the data: a refusal is quick
    spec = apply_overrides(base_spec, num_classes=config.num_classes)
    if config.download:  # rank 0 fetches, the others wait for it
        if ctx.main:
            fetch_data(config.data)
        if ctx.distributed:
            dist.barrier()
    data, train_set, test_set, info = task.load(config, spec, base_spec, settings)
    if config.subset is not None:
        train_set = Subset(train_set, range(min(config.subset, len(train_set))))
        test_set = Subset(test_set, range(min(config.subset, len(test_set))))
    if len(test_set) == 0:
        raise UsageError(f"{data.name} has no test images: a run needs some to measure its {task.measures}")
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    random.seed(config.seed)
    model = create_model(spec).to(ctx.device)
    if config.finetune and not config.resume:
        _load_finetune(model, config, spec, console, ctx.main)
    optimizer, scheduler = make_optimization(settings, model.parameters())
    return _Run(
        config, ctx, console, spec, settings, data, train_set, test_set, info, model, optimizer, scheduler,
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16"),
        criterion=task.criterion(settings), task=task, best=initial_best(task),
    )  # fmt: skip


def _open_folder(run: _Run, held: contextlib.ExitStack) -> None:
    """Rank 0 makes the run folder (inside its root), takes its lock for the whole run (held
    by ``held``) and, for a new run, clears or refuses an earlier run's files."""
    config, out = run.config, run.out
    last = out / LAST

    def open_folder() -> None:
        if config.resume and not (last.exists() or last.is_symlink()):
            raise UsageError(f"--resume: {last} does not exist; start without --resume")
        make_folder(out, run.root)
        held.enter_context(folder_lock(out, run.root))
        if not config.resume:
            prepare_out(out, config.force)

    on_rank0(open_folder, run.ctx)


def _resume(run: _Run) -> None:
    """Continue from ``last.pt``: checked as a whole on rank 0 (which alone reads it), then
    loaded field by field on every rank."""
    ctx, last = run.ctx, run.out / LAST
    checkpoint = on_rank0(lambda: read_last(last), ctx)
    changes = identity_changes(recorded_identity(checkpoint), run.identity)
    if changes:
        raise UsageError(
            f"--resume: {last} was written with {changes}; resume with the same spec and settings"
        )
    start = checkpoint["epoch"]
    if start > run.settings["epochs"]:
        raise damaged(last, "epoch", f"at most the run's {run.settings['epochs']} epochs", start)
    load_weights_into(run.model, checkpoint, run.spec, last)
    check_optimizer(checkpoint["optimizer"], run.optimizer, last)
    load_state(run.optimizer, checkpoint["optimizer"], "optimizer", last)
    check_like(checkpoint["scheduler"], run.scheduler.state_dict(), "scheduler", last)
    if checkpoint["scheduler"]["last_epoch"] != start:
        raise damaged(
            last, "scheduler.last_epoch", f"{start} (its epoch)", checkpoint["scheduler"]["last_epoch"]
        )
    load_state(run.scheduler, checkpoint["scheduler"], "scheduler", last)
    if "scaler" in checkpoint and run.scaler.is_enabled():
        check_like(checkpoint["scaler"], run.scaler.state_dict(), "scaler", last)
        load_state(run.scaler, checkpoint["scaler"], "scaler", last)
    run.start, run.history, run.best = start, checkpoint["history"], dict(checkpoint["best"])
    rng = checkpoint["rng"]
    try:
        if len(rng) == ctx.world_size:
            set_rng_state(rng[ctx.rank], ctx)
        else:  # a different number of processes: continue, but not bit for bit
            set_rng_state(rng[0], ctx)
            torch.manual_seed(run.config.seed + 7919 * (start + 1) + ctx.rank)
            if ctx.main:
                say(run.console, f"note: resuming a {len(rng)}-process run on {ctx.world_size} processes")
    except (ValueError, TypeError, RuntimeError) as error:
        raise damaged(last, "rng", "RNG states this torch and Python can restore", str(error)) from None


def _loader(run: _Run) -> tuple[DataLoader, DistributedSampler, torch.Generator]:
    ctx = run.ctx
    sampler = DistributedSampler(
        run.train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=run.config.seed
    )
    per_rank = run.settings["batch_size"] // ctx.world_size
    if sampler.num_samples < 2:
        raise UsageError(
            f"{len(run.train_set)} training image(s) for {ctx.world_size} process(es): BatchNorm needs at "
            "least 2 images per step"
        )
    generator = torch.Generator()
    loader = DataLoader(
        run.train_set,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=run.config.workers,
        pin_memory=ctx.device.type == "cuda",
        generator=generator,
        # a last batch of one image would make BatchNorm fail (one value per channel): drop it
        drop_last=sampler.num_samples % per_rank == 1,
    )
    return loader, sampler, generator


def _wrap(run: _Run) -> nn.Module:
    """The module the steps call: the model, under DDP with several processes, compiled with
    --compile."""
    ctx, net = run.ctx, run.model
    if ctx.distributed:
        net = DistributedDataParallel(
            run.model,
            device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
            find_unused_parameters=has_unused_parameters(run.model),
        )
    if run.config.compile:
        net = torch.compile(net)
    return net


def _announce(run: _Run, end: int) -> None:
    ctx, settings = run.ctx, run.settings
    if ctx.main and run.start < end:
        say(
            run.console,
            f"training {run.spec.name} on {run.data.name}: {len(run.train_set)} "
            f"{run.task.items.format(test=len(run.test_set))}, {ctx.world_size} "
            f"process{'es' if ctx.distributed else ''} on {ctx.device.type}, "
            f"epochs {run.start + 1}..{end} of {settings['epochs']}; "
            f"{settings['recipe']}: {settings['optimizer']} lr {settings['lr']:g}, batch "
            f"{settings['batch_size']}, {settings['schedule']} schedule",
        )


def _train_epoch(run: _Run, net: nn.Module, loader: DataLoader, epoch: int) -> torch.Tensor:
    """One pass over this rank's share of the training set; returns its sums (loss, correct,
    images), the scheduler stepped."""
    config, ctx = run.config, run.ctx
    amp_dtype = AMP_DTYPES.get(config.amp or "", torch.float32)
    net.train()
    totals = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # loss sum, correct, images
    progress = Progress(
        TextColumn(f"epoch {epoch + 1}/{run.settings['epochs']}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=run.console,
        transient=True,
        disable=not (ctx.main and run.console.is_terminal),
    )
    with progress:
        task = progress.add_task("train", total=len(loader), loss="-")  # no step yet
        step_seconds = []
        for images, labels in loader:
            step_start = time.perf_counter()
            images = images.to(ctx.device, non_blocking=True)
            labels = labels.to(ctx.device, non_blocking=True)
            with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=config.amp is not None):
                logits = net(images)
            loss = run.criterion(logits.float(), labels)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            correct = run.task.correct(logits, labels)
            totals += torch.stack(
                [loss.detach().double() * len(labels), correct, totals.new_tensor(len(labels))]
            )
            mean = float(totals[0] / totals[2])  # waits for the step
            progress.update(task, advance=1, loss=f"{mean:.4f}")
            step_seconds.append(time.perf_counter() - step_start)
    if config.compile and epoch == run.start and ctx.main:
        after = step_seconds[1:]
        others = f", then {statistics.median(after) * 1e3:.0f} ms a step (median)" if after else ""
        say(run.console, f"torch.compile: the first step took {step_seconds[0]:.1f} s (it compiles){others}")
    run.scheduler.step()
    return totals


def _validate(run: _Run, epoch: int, totals: torch.Tensor, lr: float, tic: float) -> dict[str, Any]:
    """The epoch's record: the training sums of every rank, and the test scores of the model
    with its BatchNorm statistics averaged over the ranks."""
    ctx = run.ctx
    if ctx.distributed:
        dist.all_reduce(totals)
    average_buffers(run.model, ctx)
    record = {"epoch": epoch + 1, "lr": lr, "train_loss": float(totals[0] / totals[2])}
    record |= run.task.train_fields(totals) | run.task.validate(run)
    return record | {"seconds": round(time.perf_counter() - tic, 3)}


def _check_finite(run: _Run, record: dict[str, Any]) -> None:
    """Stop a run whose losses or weights are no longer finite, before anything of its epoch is
    written: the folder keeps the last finite epoch.  Every rank sees the same numbers (the
    sums are reduced, the weights and buffers shared), so every rank stops."""
    losses = {"train_loss": "training loss", "test_loss": "test loss"}
    broken = [
        f"the {text} is {record[key]}" for key, text in losses.items() if not math.isfinite(record[key])
    ]
    if not broken:
        state = run.model.state_dict().items()
        weights = [name for name, t in state if t.is_floating_point() and not t.isfinite().all()]
        if weights:
            broken = [f"{len(weights)} weight tensor(s) hold NaN or infinity ({weights[0]}, ...)"]
    if not broken:
        return
    last = run.out / LAST
    kept = (
        f"{last} keeps epoch {run.history[-1]['epoch']}, the last with finite numbers"
        if run.history
        else "no checkpoint was written"
    )
    hint = "; or --amp bf16, whose range is that of float32" if run.config.amp == "fp16" else ""
    raise DivergedError(
        f"training diverged in epoch {record['epoch']}: {' and '.join(broken)}; {kept}. Try a lower "
        f"--lr, or --warmup{hint}"
    )


def _save_epoch(run: _Run, record: dict[str, Any]) -> None:
    """Add the epoch to the history; rank 0 writes last.pt, best.pt when the test accuracy
    improved, the metrics and TensorBoard's scalars, and reports the epoch."""
    ctx, out, root, info = run.ctx, run.out, run.root, run.info
    run.history.append(record)
    key = run.task.best_key
    improved = record[key] > run.best[key]
    if improved:
        run.best = {"epoch": record["epoch"], key: record[key]}
    rng = gather(rng_state(ctx), ctx)
    if not ctx.main:
        return
    checkpoint = {
        "epoch": record["epoch"],
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng,
        "history": run.history,
        "best": run.best,
        "settings": run.settings,
        "world_size": ctx.world_size,
        "info": info.to_dict(),
        "spec": spec_record(info),
    }
    if run.scaler.is_enabled():
        checkpoint["scaler"] = run.scaler.state_dict()
    save_checkpoint(out / LAST, checkpoint, root=root)
    if improved:
        best_checkpoint = {"epoch": record["epoch"], "model": checkpoint["model"], "best": run.best}
        best_checkpoint |= {"info": info.to_dict(), "spec": spec_record(info)}
        save_checkpoint(out / BEST, best_checkpoint, root=root)
        if run.config.safetensors:
            save_best_safetensors(out / BEST_SAFETENSORS, checkpoint["model"], info, root)
    write_metrics(out, run.metrics(), root)
    if run.writer is not None:
        for column in run.task.columns[1:]:
            run.writer.add_scalar(column, record[column], record["epoch"])
        run.writer.flush()
    say(
        run.console,
        f"epoch {record['epoch']}/{run.settings['epochs']}  lr {record['lr']:.4g}  loss "
        f"{record['train_loss']:.4f}  {run.task.line(record)}  {record['seconds']:.1f}s",
    )


def _finish(run: _Run, started: float) -> TrainResult:
    """Every rank's weight hash into the final metrics; rank 0 writes them and the curves."""
    ctx, history, best = run.ctx, run.history, run.best
    hashes = gather(state_dict_hash(run.model), ctx)
    metrics = run.metrics()
    metrics["state_dict_sha256"] = hashes
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if ctx.main:
        write_metrics(run.out, metrics, run.root)
        if history:
            title = f"{run.spec.name} on {run.data.name}"
            draw_run_curves(history, run.out, title, run.console, run.root, run.task.plot)
            say(run.console, f"{run.task.final_line(history, best)}; checkpoints and metrics in {run.out}")
    return TrainResult(run.out, metrics, run.settings)


__all__ = [
    "RESUME_KEYS",
    "DivergedError",
    "ModelInfo",
    "TrainConfig",
    "TrainResult",
    "evaluate_model",
    "run",
    "train",
]
