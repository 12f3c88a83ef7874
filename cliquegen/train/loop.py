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

import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..checkpoint.info import ModelInfo, model_info, spec_record
from ..checkpoint.load import load_weights_into
from ..data.sets import AUGMENTATIONS, fetch_data, load_data
from ..errors import UsageError
from ..models import create_model
from ..spec.shipped import apply_overrides, resolve_spec
from .config import (
    AMP_DTYPES,
    BEST,
    BEST_SAFETENSORS,
    HISTORY_COLUMNS,
    LAST,
    RESUME_KEYS,
    TrainConfig,
    TrainResult,
)
from .distributed import (
    Context,
    average_buffers,
    broadcast,
    gather,
    has_unused_parameters,
    loader_seed,
    rng_state,
    set_rng_state,
    setup,
)
from .recipes import ADAMW_LR, OPTIMIZERS, SCHEDULES, get_recipe, make_optimization
from .recipes import milestones as milestones
from .rundir import (
    check_resumable,
    draw_run_curves,
    load_checkpoint,
    prepare_out,
    run_metrics,
    save_best_safetensors,
    save_checkpoint,
    state_dict_hash,
    tensorboard_writer,
    write_metrics,
)

# --- RNG states as tensors and plain values, so checkpoints load with weights_only=True --------


# --- files --------------------------------------------------------------------------------------


# --- the loop -----------------------------------------------------------------------------------


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    workers: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
    amp: str | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over the whole ``dataset`` (each rank scores every
    world_size-th image; the sums are reduced over the ranks)."""
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    generator = torch.Generator().manual_seed(0)  # evaluation draws nothing from the run's RNG
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers, generator=generator)
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, images
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(
                device.type, dtype=AMP_DTYPES.get(amp, torch.float32), enabled=amp is not None
            ):
                logits = model(images)
            logits = logits.float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == labels[:, None]
            sums += torch.stack(
                [
                    F.cross_entropy(logits, labels, reduction="sum").double(),
                    hits[:, 0].sum().double(),
                    hits.any(dim=1).sum().double(),
                    sums.new_tensor(len(labels)),
                ]
            )
    if world_size > 1:
        dist.all_reduce(sums)
    count = max(float(sums[3]), 1.0)
    return {"loss": float(sums[0]) / count, "top1": float(sums[1]) / count, "top5": float(sums[2]) / count}


def run(config: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train ``config.spec`` on ``config.data``; rank 0 writes the run folder ``config.out``."""
    ctx = setup(config.device)
    try:
        result = _train(config, ctx, console or Console(highlight=False))
        if ctx.distributed:  # rank 0 is still writing files; tear the group down together
            dist.barrier()
        return result
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def train(config: TrainConfig, console: Console | None = None) -> dict[str, Any]:
    """:func:`run`, returning only the metrics that rank 0 writes to metrics.json."""
    return run(config, console).metrics


def resolve_settings(config: TrainConfig, spec_name: str, world_size: int = 1) -> dict[str, Any]:
    """The run's settings: the config's values, the recipe's where the config has None."""
    recipe = get_recipe(config.recipe)
    optimizer = config.optimizer or recipe.optimizer
    default_lr = ADAMW_LR if optimizer == "adamw" else recipe.lr
    epochs = config.epochs if config.epochs is not None else recipe.epochs_for(config.data)
    settings = {
        "spec": spec_name,
        "data": config.data,
        "recipe": recipe.name,
        "epochs": epochs,
        "batch_size": config.batch_size if config.batch_size is not None else recipe.batch_size,
        "lr": config.lr if config.lr is not None else default_lr,
        "momentum": config.momentum if config.momentum is not None else recipe.momentum,
        "weight_decay": config.weight_decay if config.weight_decay is not None else recipe.weight_decay,
        "optimizer": optimizer,
        "schedule": config.schedule or recipe.schedule,
        "milestones": recipe.milestones(epochs),
        "warmup": config.warmup,
        "label_smoothing": config.label_smoothing,
        "augment": config.augment or recipe.augment,
        "seed": config.seed,
        "subset": config.subset,
        "amp": config.amp,
        "num_classes": config.num_classes,
        "finetune": config.finetune,
    }
    _check(settings, config, world_size)
    return settings


def _check(settings: dict[str, Any], config: TrainConfig, world_size: int) -> None:
    """Refuse settings torch would reject late, or accept and train wrongly."""

    def number(name: str, value: float, ok: bool, need: str) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and ok):
            raise UsageError(f"--{name.replace('_', '-')} must be {need}, got {value!r}")

    number("epochs", settings["epochs"], settings["epochs"] >= 1, "at least 1")
    number("batch_size", settings["batch_size"], settings["batch_size"] >= 1, "at least 1")
    batch = settings["batch_size"]
    if batch < world_size or batch % world_size:
        raise UsageError(
            f"--batch-size {batch} is the global batch and must be a multiple of the {world_size} processes"
        )
    number("lr", settings["lr"], settings["lr"] > 0, "a positive number")
    number("momentum", settings["momentum"], 0 <= settings["momentum"] < 1, "in [0, 1)")
    number("weight_decay", settings["weight_decay"], settings["weight_decay"] >= 0, "at least 0")
    number("warmup", settings["warmup"], 0 <= settings["warmup"] < settings["epochs"], "in [0, epochs)")
    ls = settings["label_smoothing"]
    number("label_smoothing", ls, 0 <= ls < 1, "in [0, 1)")
    number("workers", config.workers, config.workers >= 0, "at least 0")
    for name in ("subset", "stop_after", "num_classes"):
        value = getattr(config, name)
        if value is not None:
            number(name, value, value >= 1, "at least 1")
    for name, value, choices in (
        ("optimizer", settings["optimizer"], OPTIMIZERS),
        ("schedule", settings["schedule"], SCHEDULES),
        ("augment", settings["augment"], AUGMENTATIONS),
        ("amp", settings["amp"] or "bf16", tuple(AMP_DTYPES)),  # None: full precision
    ):
        if value not in choices:
            raise UsageError(f"unknown --{name} {value!r}; choose one of {', '.join(choices)}")


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
            console.print(
                f"fine-tuning with a new classifier: {spec.num_classes} classes (the weights had {old})"
            )
    wrapped = {**checkpoint, "model": state} if isinstance(checkpoint.get("model"), dict) else state
    load_weights_into(model, wrapped, spec, config.finetune)


def _train(config: TrainConfig, ctx: Context, console: Console) -> TrainResult:
    base_spec = resolve_spec(config.spec)
    settings = resolve_settings(config, base_spec.name, ctx.world_size)
    check_resumable(Path(config.out), config, settings, ctx)  # before the data: a refusal is quick
    spec = apply_overrides(base_spec, num_classes=config.num_classes)
    if config.download:  # rank 0 fetches, the others wait for it
        if ctx.main:
            fetch_data(config.data)
        if ctx.distributed:
            dist.barrier()
    data = load_data(config.data, spec, augment=settings["augment"])
    train_set, test_set = data.train, data.test
    if config.subset is not None:
        train_set = Subset(train_set, range(min(config.subset, len(train_set))))
        test_set = Subset(test_set, range(min(config.subset, len(test_set))))
    out = Path(config.out)
    last = out / LAST
    info = model_info(
        config.spec,
        spec if config.num_classes is None else base_spec,
        classes=data.classes,
        mean=data.mean,
        std=data.std,
        data=data.name,
        eval_transform="centre-crop"
        if data.kind == "folder" and settings["augment"] == "standard"
        else "resize",
        overrides={"num_classes": config.num_classes} if config.num_classes is not None else {},
    )

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    random.seed(config.seed)
    model = create_model(spec).to(ctx.device)
    if config.finetune and not config.resume:
        _load_finetune(model, config, spec, console, ctx.main)
    optimizer, scheduler = make_optimization(settings, model.parameters())
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
    criterion = nn.CrossEntropyLoss(label_smoothing=settings["label_smoothing"])
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "test_accuracy": -1.0}
    start = 0

    if config.resume:
        checkpoint = broadcast(load_checkpoint(last) if ctx.main and last.exists() else None, ctx)
        if checkpoint is None:
            raise UsageError(f"--resume: {last} does not exist; start without --resume")
        changed = [k for k in RESUME_KEYS if checkpoint["settings"].get(k) != settings[k]]
        if changed:
            was = ", ".join(f"{k}={checkpoint['settings'].get(k)!r}" for k in changed)
            raise UsageError(f"--resume: {last} was written with {was}; resume with the same settings")
        load_weights_into(model, checkpoint, spec, last)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        start, history, best = checkpoint["epoch"], checkpoint["history"], checkpoint["best"]
        rng = checkpoint["rng"]
        if len(rng) == ctx.world_size:
            set_rng_state(rng[ctx.rank], ctx)
        else:  # a different number of processes: continue, but not bit for bit
            set_rng_state(rng[0], ctx)
            torch.manual_seed(config.seed + 7919 * (start + 1) + ctx.rank)
            if ctx.main:
                console.print(f"note: resuming a {len(rng)}-process run on {ctx.world_size} processes")
    else:
        prepare_out(out, config, ctx)
        if ctx.rank:  # different dropout masks on every rank
            torch.manual_seed(config.seed + ctx.rank)
            random.seed(config.seed + ctx.rank)
    if ctx.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create {out}: {error.strerror or error}") from None

    net: nn.Module = model
    if ctx.distributed:
        net = DistributedDataParallel(
            model,
            device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
            find_unused_parameters=has_unused_parameters(model),
        )
    if config.compile:
        net = torch.compile(net)
    sampler = DistributedSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
    )
    per_rank = settings["batch_size"] // ctx.world_size
    if sampler.num_samples < 2:
        raise UsageError(
            f"{len(train_set)} training image(s) for {ctx.world_size} process(es): BatchNorm needs at "
            "least 2 images per step"
        )
    generator = torch.Generator()
    loader = DataLoader(
        train_set,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=ctx.device.type == "cuda",
        generator=generator,
        # a last batch of one image would make BatchNorm fail (one value per channel): drop it
        drop_last=sampler.num_samples % per_rank == 1,
    )
    writer = tensorboard_writer(out, config, ctx, start)
    end = settings["epochs"] if config.stop_after is None else min(settings["epochs"], config.stop_after)
    epochs = settings["epochs"]
    if ctx.main and start < end:
        console.print(
            f"training {spec.name} on {data.name}: {len(train_set)} train / {len(test_set)} test images, "
            f"{ctx.world_size} process{'es' if ctx.distributed else ''} on {ctx.device.type}, "
            f"epochs {start + 1}..{end} of {epochs}; {settings['recipe']}: {settings['optimizer']} "
            f"lr {settings['lr']:g}, batch {settings['batch_size']}, {settings['schedule']} schedule"
        )
    started = time.perf_counter()
    amp_dtype = AMP_DTYPES.get(config.amp or "", torch.float32)
    for epoch in range(start, end):
        tic = time.perf_counter()
        sampler.set_epoch(epoch)
        generator.manual_seed(loader_seed(config.seed, epoch, ctx.rank, 0))
        lr = optimizer.param_groups[0]["lr"]
        net.train()
        totals = torch.zeros(3, dtype=torch.float64, device=ctx.device)  # loss sum, correct, images
        progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (ctx.main and console.is_terminal),
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
                loss = criterion(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                correct = (logits.detach().argmax(dim=1) == labels).sum().double()
                totals += torch.stack(
                    [loss.detach().double() * len(labels), correct, totals.new_tensor(len(labels))]
                )
                mean = float(totals[0] / totals[2])  # waits for the step
                progress.update(task, advance=1, loss=f"{mean:.4f}")
                step_seconds.append(time.perf_counter() - step_start)
        if config.compile and epoch == start and ctx.main:
            after = step_seconds[1:]
            others = f", then {statistics.median(after) * 1e3:.0f} ms a step (median)" if after else ""
            console.print(f"torch.compile: the first step took {step_seconds[0]:.1f} s (it compiles){others}")
        scheduler.step()
        if ctx.distributed:
            dist.all_reduce(totals)
        average_buffers(model, ctx)
        scores = evaluate_model(
            model, test_set, ctx.device, per_rank, config.workers,
            rank=ctx.rank, world_size=ctx.world_size, amp=config.amp,
        )  # fmt: skip
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(totals[0] / totals[2]),
            "train_accuracy": float(totals[1] / totals[2]),
            "test_loss": scores["loss"],
            "test_accuracy": scores["top1"],
            "test_top5": scores["top5"],
            "seconds": round(time.perf_counter() - tic, 3),
        }
        history.append(record)
        improved = record["test_accuracy"] > best["test_accuracy"]
        if improved:
            best = {"epoch": epoch + 1, "test_accuracy": record["test_accuracy"]}
        rng = gather(rng_state(ctx), ctx)
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
                "info": info.to_dict(),
                "spec": spec_record(info),
            }
            if scaler.is_enabled():
                checkpoint["scaler"] = scaler.state_dict()
            save_checkpoint(last, checkpoint, root=out)
            if improved:
                best_checkpoint = {"epoch": epoch + 1, "model": checkpoint["model"], "best": best}
                best_checkpoint |= {"info": info.to_dict(), "spec": spec_record(info)}
                save_checkpoint(out / BEST, best_checkpoint, root=out)
                if config.safetensors:
                    save_best_safetensors(out / BEST_SAFETENSORS, checkpoint["model"], info, out)
            write_metrics(out, run_metrics(config, settings, data.name, ctx, history, best))
            if writer is not None:
                for key in HISTORY_COLUMNS[1:]:
                    writer.add_scalar(key, record[key], epoch + 1)
                writer.flush()
            console.print(
                f"epoch {epoch + 1}/{epochs}  lr {lr:.4g}  loss {record['train_loss']:.4f}  "
                f"train {100 * record['train_accuracy']:.2f}%  test loss {record['test_loss']:.4f}  "
                f"top-1 {100 * record['test_accuracy']:.2f}%  top-5 {100 * record['test_top5']:.2f}%  "
                f"{record['seconds']:.1f}s"
            )

    hashes = gather(state_dict_hash(model), ctx)
    metrics = run_metrics(config, settings, data.name, ctx, history, best)
    metrics["state_dict_sha256"] = hashes
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if ctx.main:
        if writer is not None:
            writer.close()
        write_metrics(out, metrics)
        if history:
            draw_run_curves(history, out, f"{spec.name} on {data.name}", console)
            console.print(
                f"test accuracy {100 * history[-1]['test_accuracy']:.2f}% after {history[-1]['epoch']} "
                f"epoch{'s' * (history[-1]['epoch'] != 1)} "
                f"(best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']}); "
                f"checkpoints and metrics in {out}"
            )
    return TrainResult(out, metrics, settings)


__all__ = ["ModelInfo", "TrainConfig", "TrainResult", "evaluate_model", "run", "train"]
