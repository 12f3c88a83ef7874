"""``cliquegen sweep``: train several specs over several seeds with one recipe, and compare them.

Every run goes through :func:`cliquegen.train.train` (so under torchrun every run is DDP) into
its own folder, ``OUT/<spec name>/seed<S>``.  The sweep is resumable: a run whose
``metrics.json`` says it finished with the same settings is skipped, a run with a ``last.pt``
is resumed exactly (``--resume``), any other is started.  Once every run is done, rank 0 writes
``OUT/results.json``, ``results.csv``, ``results.md`` and ``results.png``: per spec its
parameters and FLOPs, the seeds, the final and the best top-1 test error (mean and sample
standard deviation over the seeds, in percent) and the mean training time of a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
from rich.console import Console

from .._io import atomic_write
from ..compiler.lower import compile_spec
from ..compiler.summary import summarize
from ..errors import UsageError
from ..spec.model import Spec
from ..spec.shipped import resolve_spec
from .config import LAST, METRICS
from .loop import RESUME_KEYS, TrainConfig, resolve_settings
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

#: TrainConfig fields that the sweep sets per run rather than passing through.
PER_RUN = ("spec", "out", "seed", "resume", "stop_after", "force")


@dataclass
class SweepConfig:
    specs: list[str]
    out: str
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)  # the other TrainConfig fields: data, epochs, ...

    @classmethod
    def from_args(cls, options: dict[str, Any]) -> SweepConfig:
        """From the command line's options: ``specs``, ``out``, ``seeds`` and train's options."""
        fields = set(TrainConfig.__dataclass_fields__) - set(PER_RUN)
        train = {key: value for key, value in options.items() if key in fields}
        return cls(options["specs"], options["out"], list(options["seeds"]), train)

    def train_config(self, spec: str, seed: int, out: Path, resume: bool) -> TrainConfig:
        return TrainConfig(spec=spec, out=str(out), seed=seed, resume=resume, **self.train)


def run_folder(out: str | Path, spec_name: str, seed: int) -> Path:
    return Path(out) / spec_name / f"seed{seed}"


def check(config: SweepConfig) -> list[tuple[str, Spec]]:
    """The specs, loaded, before anything is trained: bad settings fail at once."""
    if not config.seeds:
        raise UsageError("--seeds needs at least one seed")
    if len(set(config.seeds)) != len(config.seeds):
        raise UsageError(f"--seeds lists a seed twice: {config.seeds}")
    specs = [(text, resolve_spec(text)) for text in config.specs]
    names = [spec.name for _, spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            f"two specs are named {', '.join(twice)}; each run folder is OUT/<spec name>/seed<S>"
        )
    return specs


def run_state(folder: Path, config: TrainConfig, spec_name: str, world_size: int = 1) -> str:
    """``done``, ``resume`` or ``start``: what the sweep does with this run folder."""
    metrics_file = folder / METRICS
    if metrics_file.exists():
        metrics = read_metrics(metrics_file)
        wanted = resolve_settings(config, spec_name, world_size)
        changed = [key for key in RESUME_KEYS if metrics.get(key) != wanted[key]]
        if changed:
            was = ", ".join(f"{key}={metrics.get(key)!r}" for key in changed)
            raise UsageError(
                f"{folder} holds a run with {was}; sweep again with the same settings or another --out"
            )
        if metrics.get("epochs_done") == wanted["epochs"]:
            return "done"
    return "resume" if (folder / LAST).exists() else "start"


def finished_run(folder: Path, seed: int) -> Run:
    metrics = read_metrics(folder / METRICS)
    history = metrics["history"]
    return Run(
        seed=seed,
        folder=str(folder),
        final_error=100 * (1 - metrics["test_accuracy"]),
        best_error=100 * (1 - metrics["best"]["test_accuracy"]),
        best_epoch=metrics["best"]["epoch"],
        train_seconds=round(sum(record["seconds"] for record in history), 3),
    )


def sweep(config: SweepConfig, console: Console | None = None) -> list[SpecResult] | None:
    """Train every spec x seed (skipping finished runs, resuming interrupted ones), then write
    the results.  Returns them on rank 0 (None on the other ranks of a torchrun job)."""
    from ..draw.figure import require_matplotlib
    from .loop import setup

    console = console or Console(highlight=False)
    require_matplotlib("the sweep's results figure")
    specs = check(config)
    ctx = setup(config.train.get("device", "auto"))  # one process group for every run, on their device
    try:
        results = _sweep(config, specs, ctx, console)
        if ctx.distributed:  # rank 0 is still writing the results
            dist.barrier()
        return results
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _sweep(
    config: SweepConfig, specs: list[tuple[str, Spec]], ctx, console: Console
) -> list[SpecResult] | None:
    from .loop import run

    total, count = len(specs) * len(config.seeds), 0
    for text, spec in specs:
        for seed in config.seeds:
            count += 1
            folder = run_folder(config.out, spec.name, seed)
            fresh = config.train_config(text, seed, folder, resume=False)
            state = _on_rank0(lambda: run_state(folder, fresh, spec.name, ctx.world_size), ctx)  # noqa: B023
            if ctx.main:
                console.print(f"[{count}/{total}] {spec.name} seed {seed}: {_STATES[state]} ({folder})")
            if state != "done":
                run(config.train_config(text, seed, folder, resume=state == "resume"), console=console)
    if not ctx.main:
        return None
    results = []
    for _, spec in specs:
        summary = summarize(compile_spec(spec))
        runs = [finished_run(run_folder(config.out, spec.name, seed), seed) for seed in config.seeds]
        results.append(SpecResult(spec.name, summary.params, summary.flops, runs))
    text, spec = specs[0]
    recipe = resolve_settings(
        config.train_config(text, 0, Path(config.out), False), spec.name, ctx.world_size
    )
    shared = {key: value for key, value in recipe.items() if key not in ("spec", "seed")}
    for path in write_results(results, shared, config.seeds, Path(config.out)):
        console.print(f"wrote {path}")
    return results


_STATES = {"done": "finished, skipped", "resume": "resuming", "start": "training"}


def _on_rank0(decide, ctx) -> Any:
    """``decide()`` on rank 0 (which alone sees the output folder), shared with every rank;
    a UsageError there stops every rank."""
    outcome: Any
    if ctx.main:
        try:
            outcome = ("ok", decide())
        except UsageError as error:
            outcome = ("error", str(error))
    else:
        outcome = None
    if ctx.distributed:
        box = [outcome]
        dist.broadcast_object_list(box, src=0)
        outcome = box[0]
    kind, value = outcome
    if kind == "error":
        raise UsageError(value)
    return value


# --- results files ------------------------------------------------------------------------------


def write_results(
    results: list[SpecResult], settings: dict[str, Any], seeds: list[int], out: Path
) -> list[Path]:
    """``out/results.json``, ``.csv``, ``.md`` and ``.png``; ``settings``: the recipe every run used."""
    from ..draw.figure import save_figure
    from .figures import draw_results

    rows = [result.to_json() for result in results]
    document = {
        "settings": settings,
        "seeds": seeds,
        "error": "top-1 test error in percent; std is the sample standard deviation over the seeds",
        "specs": rows,
    }
    paths = [
        atomic_write(out / f"{RESULTS}.json", json.dumps(document, indent=2) + "\n"),
        atomic_write(out / f"{RESULTS}.csv", results_csv(rows)),
        atomic_write(out / f"{RESULTS}.md", results_markdown(rows, settings)),
    ]
    title = f"{data_text(settings)}, {settings['epochs']} epochs, seeds {seeds_text(seeds)}"
    paths.append(save_figure(draw_results(results, title), out / f"{RESULTS}.png"))
    return paths


# --- training curves (cliquegen plot) -----------------------------------------------------------


def plot_runs(run_dirs: list[str], output: str) -> Path:
    """``cliquegen plot``: the training curves of several runs, overlaid, in one figure."""
    from ..draw.figure import figure_format, require_matplotlib, save_figure
    from .figures import draw_curves

    figure_format(output)
    require_matplotlib("cliquegen plot")
    return save_figure(draw_curves(read_curves(run_dirs)), output)
