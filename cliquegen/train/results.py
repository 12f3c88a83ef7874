"""What runs and sweeps leave behind, as records: a finished run (from its ``metrics.json``), a
spec's result over its seeds, a run's curve, and the tables of ``results.{csv,md}``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..spec.overrides import short_keys, value_text
from .config import HISTORY_COLUMNS, METRICS, SR_HISTORY_COLUMNS

RESULTS = "results"  # results.json, .csv, .md, .png


@dataclass(frozen=True)
class Run:
    """One finished training run, from its ``metrics.json``."""

    seed: int
    folder: str
    final_error: float | None  # top-1 test error after the last epoch, percent (None: SR)
    best_error: float | None  # lowest top-1 test error of any epoch, percent
    best_epoch: int
    train_seconds: float  # sum of the epochs' wall times (also over resumed parts)
    # super-resolution runs: validation PSNR (dB) and SSIM on Y after the last epoch, the best
    # epoch's PSNR, and bicubic's on the same images
    psnr_y: float | None = None
    ssim_y: float | None = None
    best_psnr_y: float | None = None
    bicubic_psnr_y: float | None = None
    bicubic_ssim_y: float | None = None

    @property
    def super_resolution(self) -> bool:
        return self.psnr_y is not None


@dataclass(frozen=True)
class SpecResult:
    spec: str  # the spec's name, or its variant's (cliquenet-k36-t12@stages=3)
    params: int
    flops: int
    runs: list[Run]
    #: ``sweep --grid``: each gridded key as given (``defaults.schedule.stages``) and the value of
    #: this variant; empty without a grid.
    varied: dict[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    def mean_std(self, attribute: str) -> tuple[float, float | None]:
        """Mean and sample standard deviation over the seeds (None for one seed)."""
        values = [getattr(run, attribute) for run in self.runs]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    @property
    def super_resolution(self) -> bool:
        return self.runs[0].super_resolution

    def to_json(self) -> dict[str, Any]:
        if self.super_resolution:
            return self._sr_json()
        final, final_std = self.mean_std("final_error")
        best, best_std = self.mean_std("best_error")
        return {
            "spec": self.spec,
            "params": self.params,
            "flops": self.flops,
            "seeds": self.seeds,
            "final_error_mean": final,
            "final_error_std": final_std,
            "best_error_mean": best,
            "best_error_std": best_std,
            "train_seconds_mean": self.mean_std("train_seconds")[0],
            "varied": dict(self.varied),
            "runs": [asdict(run) for run in self.runs],
        }

    def _sr_json(self) -> dict[str, Any]:
        psnr, psnr_std = self.mean_std("psnr_y")
        ssim, ssim_std = self.mean_std("ssim_y")
        best, best_std = self.mean_std("best_psnr_y")
        return {
            "spec": self.spec,
            "params": self.params,
            "flops": self.flops,
            "seeds": self.seeds,
            "psnr_y_mean": psnr,
            "psnr_y_std": psnr_std,
            "ssim_y_mean": ssim,
            "ssim_y_std": ssim_std,
            "best_psnr_y_mean": best,
            "best_psnr_y_std": best_std,
            "bicubic_psnr_y": self.mean_std("bicubic_psnr_y")[0],
            "bicubic_ssim_y": self.mean_std("bicubic_ssim_y")[0],
            "train_seconds_mean": self.mean_std("train_seconds")[0],
            "varied": dict(self.varied),
            "runs": [asdict(run) for run in self.runs],
        }


#: A metrics.json larger than this is refused unread (a 300-epoch run writes about 100 KB).
MAX_METRICS_BYTES = 64 * 1024**2

#: The range of each number of an epoch's record.
_RANGES = {
    "train_accuracy": (0, 1), "test_accuracy": (0, 1), "test_top5": (0, 1), "test_ssim_y": (-1, 1),
    "bicubic_ssim_y": (-1, 1),
}  # fmt: skip


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json``, checked: strict JSON (no NaN), a history of epoch records
    with finite numbers in range, and the final and best accuracy a finished epoch implies.
    Anything else (a file edited by hand, another program's) is a UsageError naming the file
    and the field."""
    try:
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file, so not the metrics.json of a run")
        with path.open("rb") as stream:
            data = stream.read(MAX_METRICS_BYTES + 1)
        if len(data) > MAX_METRICS_BYTES:
            raise UsageError(f"{path}: over {MAX_METRICS_BYTES >> 20} MiB, far more than a run writes")
        metrics = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else error
        raise UsageError(f"{path}: cannot read the run's metrics ({reason})") from None
    except RecursionError:
        raise UsageError(f"{path}: cannot read the run's metrics (nested too deeply)") from None
    check_metrics(metrics, path, "the metrics.json a cliquegen run writes")
    return metrics


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number in strict JSON")


def check_metrics(metrics: Any, path: Path, what: str) -> None:
    """Refuse ``metrics`` (read from ``path``, which should be ``what``) unless its history,
    final and best accuracy are what a run writes."""

    def bad(where: str, need: str, value: Any) -> UsageError:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        return UsageError(f"{path}: {where} must be {need}, found {shown}; not {what} (edited by hand?)")

    def number(value: Any, where: str, low: float = 0.0, high: float = math.inf) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise bad(where, f"a number in [{low:g}, {high:g}]", value)

    if not isinstance(metrics, dict):
        raise bad("the file", "a JSON object", type(metrics).__name__)
    history = metrics.get("history")
    if not isinstance(history, list):
        raise bad("history", "a list of epochs", history)
    # a super-resolution run scores PSNR (Y) where classification scores accuracy
    first = history[0] if history and isinstance(history[0], dict) else {}
    sr = metrics.get("task") == "super-resolution" or "test_psnr_y" in first
    columns, score, high = (
        (SR_HISTORY_COLUMNS, "test_psnr_y", math.inf) if sr else (HISTORY_COLUMNS, "test_accuracy", 1)
    )
    for index, record in enumerate(history):
        where = f"history[{index}]"
        if not isinstance(record, dict):
            raise bad(where, "an object", record)
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or epoch != index + 1 or not isinstance(epoch, int):
            raise bad(f"{where}.epoch", f"{index + 1}", epoch)
        for key in columns[1:]:
            number(record.get(key), f"{where}.{key}", *_RANGES.get(key, (0.0, math.inf)))
    if not history:
        return
    if metrics.get("epochs_done") != len(history):
        raise bad("epochs_done", f"{len(history)} (the epochs in history)", metrics.get("epochs_done"))
    number(metrics.get(score), score, 0, high)
    best = metrics.get("best")
    if not isinstance(best, dict):
        raise bad("best", "an object", best)
    if isinstance(best.get("epoch"), bool) or best.get("epoch") not in range(1, len(history) + 1):
        raise bad("best.epoch", f"an epoch in 1..{len(history)}", best.get("epoch"))
    number(best.get(score), f"best.{score}", 0, high)


#: Columns of a super-resolution sweep's results: PSNR / SSIM on Y instead of errors.
SR_COLUMNS = (
    "spec", "params", "flops", "seeds", "psnr_y_mean", "psnr_y_std", "ssim_y_mean", "ssim_y_std",
    "best_psnr_y_mean", "best_psnr_y_std", "bicubic_psnr_y", "bicubic_ssim_y", "train_seconds_mean",
)  # fmt: skip

COLUMNS = (
    "spec",
    "params",
    "flops",
    "seeds",
    "final_error_mean",
    "final_error_std",
    "best_error_mean",
    "best_error_std",
    "train_seconds_mean",
)


def seeds_text(seeds: list[int]) -> str:
    return " ".join(map(str, seeds))


def varied_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The gridded keys of a sweep's rows, in the order given: one results column each."""
    return list(dict.fromkeys(key for row in rows for key in row.get("varied", {})))


def results_csv(rows: list[dict[str, Any]]) -> str:
    keys = varied_keys(rows)
    buffer = io.StringIO()
    base = SR_COLUMNS if rows and "psnr_y_mean" in rows[0] else COLUMNS
    columns = [base[0], *keys, *base[1:]]
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        varied = {key: value_text(row["varied"][key]) for key in keys if key in row.get("varied", {})}
        writer.writerow({**row, **varied, "seeds": seeds_text(row["seeds"])})
    return buffer.getvalue()


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def data_text(settings: dict[str, Any]) -> str:
    """The data the runs used: ``digits``, or ``digits (--subset 64)`` when only part of it."""
    subset = settings.get("subset")
    return settings["data"] if subset is None else f"{settings['data']} (--subset {subset})"


def results_markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    if rows and "psnr_y_mean" in rows[0]:
        return _sr_markdown(rows, settings)
    keys = varied_keys(rows)
    shown = short_keys(keys)
    subset = settings.get("subset")
    part = f"Each run used only the first {subset} training and {subset} test images (`--subset {subset}`)."
    lines = [
        f"# Sweep on {data_text(settings)}: {settings['epochs']} epochs, {settings['recipe']} recipe, "
        f"batch {settings['batch_size']}, lr {settings['lr']}",
        "",
        "Top-1 test error in percent, mean ± sample standard deviation over the seeds.",
        *(["", "Grid: " + ", ".join(f"`{key}`" for key in keys) + "."] if keys else []),
        *([part] if subset is not None else []),
        "",
        "| spec | "
        + "".join(f"{shown[key]} | " for key in keys)
        + "params | FLOPs | seeds | final error (%) | best error (%) | train time per run |",
        "|---|" + "---|" * len(keys) + "---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        cells = "".join(f"{value_text(row.get('varied', {}).get(key))} | " for key in keys)
        lines.append(
            f"| {row['spec']} | {cells}{row['params'] / 1e6:.3f}M | {row['flops'] / 1e6:.1f}M "
            f"| {seeds_text(row['seeds'])} "
            f"| {_pm(row['final_error_mean'], row['final_error_std'])} "
            f"| {_pm(row['best_error_mean'], row['best_error_std'])} | {row['train_seconds_mean']:.1f}s |"
        )
    return "\n".join(lines) + "\n"


def _sr_markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The table of a super-resolution sweep: validation PSNR and SSIM on Y, bicubic's beside."""
    keys = varied_keys(rows)
    shown = short_keys(keys)
    lines = [
        f"# Sweep on {data_text(settings)}: {settings['epochs']} epochs, {settings['recipe']} recipe, "
        f"batch {settings['batch_size']}, lr {settings['lr']}",
        "",
        "Validation PSNR (dB) and SSIM on Y (BT.601, `scale` pixels shaved), mean ± sample standard "
        "deviation over the seeds; bicubic's on the same images.",
        *(["", "Grid: " + ", ".join(f"`{key}`" for key in keys) + "."] if keys else []),
        "",
        "| spec | "
        + "".join(f"{shown[key]} | " for key in keys)
        + "params | FLOPs | seeds | PSNR (Y) | SSIM (Y) | best PSNR (Y) | bicubic | train time per run |",
        "|---|" + "---|" * len(keys) + "---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = "".join(f"{value_text(row.get('varied', {}).get(key))} | " for key in keys)
        ssim = row["ssim_y_mean"], row["ssim_y_std"]
        ssim_text = f"{ssim[0]:.4f}" if ssim[1] is None else f"{ssim[0]:.4f} ± {ssim[1]:.4f}"
        lines.append(
            f"| {row['spec']} | {cells}{row['params'] / 1e6:.3f}M | {row['flops'] / 1e6:.1f}M "
            f"| {seeds_text(row['seeds'])} | {_pm(row['psnr_y_mean'], row['psnr_y_std'])} | {ssim_text} "
            f"| {_pm(row['best_psnr_y_mean'], row['best_psnr_y_std'])} "
            f"| {row['bicubic_psnr_y']:.2f} / {row['bicubic_ssim_y']:.4f} "
            f"| {row['train_seconds_mean']:.1f}s |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Curve:
    """One run's history: test error (percent) and training loss per epoch."""

    label: str
    epochs: list[int]
    test_error: list[float]
    train_loss: list[float]


def read_curves(run_dirs: list[str]) -> list[Curve]:
    """The history of each run folder (or its ``metrics.json``), labelled ``<spec> seed <S>``
    (with the folder where two runs would share a label)."""
    found = []
    for text in run_dirs:
        path = Path(text)
        metrics_file = path / METRICS if path.is_dir() else path
        if not metrics_file.is_file():
            raise UsageError(f"{text}: no {METRICS} here; give folders that `cliquegen train --out` wrote")
        metrics = read_metrics(metrics_file)
        if not metrics["history"]:
            raise UsageError(f"{metrics_file}: the run has no finished epoch yet")
        if "test_accuracy" not in metrics["history"][0]:
            raise UsageError(
                f"{metrics_file}: a super-resolution run; plot overlays classification runs' test error "
                "(the run's own curves.png shows its PSNR)"
            )
        found.append((text, metrics))
    labels = [_label(f"{m.get('spec')} seed {m.get('seed')}") for _, m in found]
    curves = []
    for (text, metrics), label in zip(found, labels, strict=True):
        history = metrics["history"]
        curves.append(
            Curve(
                label=label if labels.count(label) == 1 else f"{label} ({_label(text)})",
                epochs=[record["epoch"] for record in history],
                test_error=[100 * (1 - record["test_accuracy"]) for record in history],
                train_loss=[record["train_loss"] for record in history],
            )
        )
    return curves


def _label(text: str) -> str:
    """User text as a figure label, as it is: ``$`` would start matplotlib's mathtext."""
    return text.replace("$", r"\$")
