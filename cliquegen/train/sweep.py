"""``cliquegen sweep``: train several specs over several seeds with one recipe, and compare them.

Every run goes through :func:`cliquegen.train.train` (so under torchrun every run is DDP) into
its own folder, ``OUT/<spec name>/seed<S>``.  With ``--set`` and ``--grid`` every spec becomes
variants (:mod:`cliquegen.train.grid`), each in ``OUT/<variant name>/seed<S>``, trained from the
resolved spec the folder holds (``spec.yaml``); the results gain a column per gridded key.
The sweep is resumable: a run whose
``metrics.json`` says it finished is skipped, a run with a ``last.pt`` is resumed exactly, any
other is started; a folder holding a run of another identity (another version of the spec
file, other settings: :func:`wanted_identity`) is refused.  Once every run is done, rank 0 writes
``OUT/results.json``, ``results.csv``, ``results.md`` and ``results.png``: per spec its
parameters and FLOPs, the seeds, the final and the best top-1 test error (mean and sample
standard deviation over the seeds, in percent) and the mean training time of a run.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from rich.console import Console

from .._io import atomic_write, confined
from ..compiler.lower import compile_spec
from ..compiler.summary import summarize
from ..draw.figure import figure_format, require_matplotlib, save_figure
from ..errors import UsageError
from ..spec.model import Spec
from .config import LAST, METRICS, TrainConfig, identity_changes, run_identity
from .distributed import Context, on_rank0, setup
from .figures import draw_curves, draw_results
from .grid import VARIANT_SPEC, Variant, expand
from .loop import run
from .results import (
    RESULTS,
    Run,
    SpecResult,
    data_text,
    read_curves,
    read_metrics,
    results_csv,
    results_markdown,
    seeds_text,
)
from .resume import read_last, recorded_identity
from .rundir import earlier_run, folder_lock, make_folder, say
from .sr_task import task_settings

#: TrainConfig fields that the sweep sets per run rather than passing through.
PER_RUN = ("spec", "out", "seed", "resume", "stop_after", "force", "root")


@dataclass
class SweepConfig:
    specs: list[str]
    out: str
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)  # the other TrainConfig fields: data, epochs, ...
    sets: list[str] = field(default_factory=list)  # --set KEY=VALUE, for every spec
    grid: list[str] = field(default_factory=list)  # --grid KEY=V1,V2,...: the cross product (train/grid.py)

    @classmethod
    def from_args(cls, options: dict[str, Any]) -> SweepConfig:
        """From the command line's options: ``specs``, ``out``, ``seeds``, ``sets``, ``grid``
        and train's options."""
        fields = set(TrainConfig.__dataclass_fields__) - set(PER_RUN)
        train = {key: value for key, value in options.items() if key in fields}
        variation = {key: list(options.get(key) or []) for key in ("sets", "grid")}
        return cls(options["specs"], options["out"], list(options["seeds"]), train, **variation)

    def train_config(self, spec: str, seed: int, out: Path, resume: bool) -> TrainConfig:
        """One run's settings; its writes stay inside the sweep's folder."""
        return TrainConfig(spec=spec, out=str(out), seed=seed, resume=resume, root=self.out, **self.train)


def run_folder(out: str | Path, spec_name: str, seed: int) -> Path:
    return Path(out) / spec_name / f"seed{seed}"


def check(config: SweepConfig) -> list[Variant]:
    """The specs and their variants, loaded, before anything is trained: bad settings fail at once."""
    if not config.seeds:
        raise UsageError("--seeds needs at least one seed")
    if len(set(config.seeds)) != len(config.seeds):
        raise UsageError(f"--seeds lists a seed twice: {config.seeds}")
    variants = expand(config.specs, config.sets, config.grid)
    names = [variant.name for variant in variants]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            f"two specs are named {', '.join(twice)}; each run folder is OUT/<spec name>/seed<S>"
        )
    return variants


def wanted_identity(config: TrainConfig, spec: Spec, world_size: int = 1) -> dict[str, Any]:
    """The identity (:func:`~cliquegen.train.config.run_identity`) of the run ``config``
    describes: what its folder must hold to be skipped as finished or resumed."""
    sha = spec.provenance.sha256
    return run_identity(sha, task_settings(config, spec, world_size))


def run_state(folder: Path, config: TrainConfig, spec: Spec, world_size: int = 1) -> str:
    """``done``, ``resume`` or ``start``: what the sweep does with this run folder.  A folder
    holding a run of another identity (another version of the spec, other settings) or an
    unfinished run that cannot be continued is refused, never reported or replaced."""
    root = Path(config.root or config.out)
    confined(folder, root)  # a link planted in the sweep's folder must not lead a run elsewhere
    wanted = wanted_identity(config, spec, world_size)

    def refuse(changes: str) -> UsageError:
        return UsageError(
            f"{folder} holds a run with {changes}; sweep again with the same specs and settings, "
            "or move that folder away (or choose another --out) to train this one"
        )

    metrics_file = folder / METRICS
    if metrics_file.exists() or metrics_file.is_symlink():
        metrics = read_metrics(metrics_file)
        changes = identity_changes(run_identity(metrics.get("spec_sha256"), metrics), wanted)
        if changes:
            raise refuse(changes)
        if metrics["epochs_done"] == wanted["epochs"]:
            return "done"
    last = folder / LAST
    if last.exists() or last.is_symlink():
        changes = identity_changes(recorded_identity(read_last(last)), wanted)
        if changes:
            raise refuse(changes)
        return "resume"
    existing = earlier_run(folder) if folder.is_dir() else []
    if existing:
        raise UsageError(
            f"{folder} holds files of an unfinished run ({', '.join(existing)}) but no {LAST} to "
            "continue it from; move that folder away (or choose another --out) to train it again"
        )
    return "start"


def finished_run(folder: Path, seed: int) -> Run:
    metrics = read_metrics(folder / METRICS)
    history = metrics["history"]
    if not history:
        raise UsageError(f"{folder / METRICS}: the run has no finished epoch")
    seconds = round(sum(record["seconds"] for record in history), 3)
    if metrics.get("task") == "super-resolution":
        last = history[-1]
        return Run(
            seed=seed, folder=str(folder), final_error=None, best_error=None,
            best_epoch=metrics["best"]["epoch"], train_seconds=seconds, psnr_y=last["test_psnr_y"],
            ssim_y=last["test_ssim_y"], best_psnr_y=metrics["best"]["test_psnr_y"],
            bicubic_psnr_y=last["bicubic_psnr_y"], bicubic_ssim_y=last["bicubic_ssim_y"],
        )  # fmt: skip
    return Run(
        seed=seed,
        folder=str(folder),
        final_error=100 * (1 - metrics["test_accuracy"]),
        best_error=100 * (1 - metrics["best"]["test_accuracy"]),
        best_epoch=metrics["best"]["epoch"],
        train_seconds=seconds,
    )


def sweep(config: SweepConfig, console: Console | None = None) -> list[SpecResult] | None:
    """Train every spec x seed (skipping finished runs, resuming interrupted ones), then write
    the results.  Returns them on rank 0 (None on the other ranks of a torchrun job).  The
    sweep holds its folder's lock throughout; each run, its own folder's."""
    console = console or Console(highlight=False)
    require_matplotlib("the sweep's results figure")
    variants = check(config)
    ctx = setup(config.train.get("device", "auto"))  # one process group for every run, on their device
    try:
        for variant in variants:  # the recipe and the settings, checked before anything is written
            train = config.train_config(variant.given, 0, Path(config.out), False)
            task_settings(train, variant.spec, ctx.world_size)
        root = Path(config.out)
        with contextlib.ExitStack() as held:

            def open_folder() -> None:
                make_folder(root, root)
                held.enter_context(folder_lock(root, root))

            on_rank0(open_folder, ctx)
            results = _sweep(config, variants, ctx, console)
        if ctx.distributed:  # rank 0 is still writing the results
            dist.barrier()
        return results
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _sweep(
    config: SweepConfig, variants: list[Variant], ctx: Context, console: Console
) -> list[SpecResult] | None:
    total, count = len(variants) * len(config.seeds), 0
    for variant in variants:
        spec = variant.spec
        for seed in config.seeds:
            count += 1
            folder = run_folder(config.out, variant.name, seed)
            text = variant.given if variant.text is None else str(folder / VARIANT_SPEC)
            fresh = config.train_config(text, seed, folder, resume=False)
            state = on_rank0(lambda: run_state(folder, fresh, spec, ctx.world_size), ctx)  # noqa: B023
            if ctx.main:
                say(console, f"[{count}/{total}] {variant.name} seed {seed}: {_STATES[state]} ({folder})")
            if state != "done":
                on_rank0(lambda: _save_variant(folder, variant, Path(config.out)), ctx)  # noqa: B023
                run(config.train_config(text, seed, folder, resume=state == "resume"), console=console)
    if not ctx.main:
        return None
    results = []
    for variant in variants:
        summary = summarize(compile_spec(variant.spec))
        runs = [finished_run(run_folder(config.out, variant.name, seed), seed) for seed in config.seeds]
        results.append(SpecResult(variant.name, summary.params, summary.flops, runs, variant.varied))
    first = variants[0]
    recipe = task_settings(
        config.train_config(first.given, 0, Path(config.out), False), first.spec, ctx.world_size
    )
    shared = {key: value for key, value in recipe.items() if key not in ("spec", "seed")}
    shared |= {"sets": config.sets, "grid": config.grid} if config.sets or config.grid else {}
    for path in write_results(results, shared, config.seeds, Path(config.out)):
        say(console, f"wrote {path}")
    return results


_STATES = {"done": "finished, skipped", "resume": "resuming", "start": "training"}


def _save_variant(folder: Path, variant: Variant, root: Path) -> None:
    """The variant's resolved spec (``spec.yaml``) in its run folder, which the run trains from;
    its sha256 is the one :func:`wanted_identity` expects (the text its Spec was made from)."""
    if variant.text is not None:
        make_folder(folder, root)
        atomic_write(folder / VARIANT_SPEC, variant.text, root=root)


# --- results files ------------------------------------------------------------------------------


def write_results(
    results: list[SpecResult], settings: dict[str, Any], seeds: list[int], out: Path
) -> list[Path]:
    """``out/results.json``, ``.csv``, ``.md`` and ``.png``; ``settings``: the recipe every run used.
    Written inside ``out`` only: a link planted there is refused, not followed."""
    rows = [result.to_json() for result in results]
    document = {
        "settings": settings,
        "seeds": seeds,
        "error": "top-1 test error in percent; std is the sample standard deviation over the seeds"
        if not (results and results[0].super_resolution)
        else "validation PSNR (dB) and SSIM on Y; std is the sample standard deviation over the seeds",
        "specs": rows,
    }
    paths = [
        atomic_write(
            out / f"{RESULTS}.json", json.dumps(document, indent=2, allow_nan=False) + "\n", root=out
        ),
        atomic_write(out / f"{RESULTS}.csv", results_csv(rows), root=out),
        atomic_write(out / f"{RESULTS}.md", results_markdown(rows, settings), root=out),
    ]
    title = f"{data_text(settings)}, {settings['epochs']} epochs, seeds {seeds_text(seeds)}"
    paths.append(save_figure(draw_results(results, title), out / f"{RESULTS}.png", root=out))
    return paths


# --- training curves (cliquegen plot) -----------------------------------------------------------


def plot_runs(run_dirs: list[str], output: str) -> Path:
    """``cliquegen plot``: the training curves of several runs, overlaid, in one figure."""
    figure_format(output)
    require_matplotlib("cliquegen plot")
    return save_figure(draw_curves(read_curves(run_dirs)), output)
