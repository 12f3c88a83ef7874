"""``cliquegen sweep`` and ``cliquegen plot``: results from the runs' own metrics, resuming,
the figures' numbers, DDP."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cliquegen import cli, compile_spec, load_spec, summarize
from cliquegen.train.figures import draw_curves, draw_results
from cliquegen.train.loop import TrainConfig, train
from cliquegen.train.sweep import SweepConfig, read_curves, run_folder, sweep

pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")
pytest.importorskip("matplotlib", reason="needs the plot extra: pip install 'cliquegen[plot]'")

TINY = """\
name: {name}
description: "a tiny clique network for the 8x8 digits"
input: {{channels: 1, height: 8, width: 8}}
num_classes: 10
stem: {{kind: cifar, channels: 8}}
defaults: {{dropout: 0.1, schedule: {{stages: 2, partial: {partial}}}}}
blocks:
  - {{layers: 2, channels: 6}}
"""
OPTIONS = ["--data", "digits", "--batch-size", "32", "--subset", "64"]


@pytest.fixture
def specs(tmp_path: Path) -> list[Path]:
    paths = []
    for name, partial in (("tiny-x0", 0), ("tiny-x2", 2)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(TINY.format(name=name, partial=partial))
        paths.append(path)
    return paths


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_results_come_from_every_run(specs: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    code, printed, err = run_cli(
        capsys, "sweep", *specs, *OPTIONS, "--epochs", "2", "--seeds", "3", "5", "--out", out
    )
    assert code == 0, err
    assert printed.count(": training (") == 4
    document = json.loads((out / "results.json").read_text())
    assert [row["spec"] for row in document["specs"]] == ["tiny-x0", "tiny-x2"]  # the given order
    for spec_path, row in zip(specs, document["specs"], strict=True):
        summary = summarize(compile_spec(load_spec(spec_path)))
        assert (row["params"], row["flops"], row["seeds"]) == (summary.params, summary.flops, [3, 5])
        metrics = [json.loads((out / row["spec"] / f"seed{s}" / "metrics.json").read_text()) for s in (3, 5)]
        assert all(m["seed"] == s and m["epochs_done"] == 2 for m, s in zip(metrics, (3, 5), strict=True))
        final = [100 * (1 - m["history"][-1]["test_accuracy"]) for m in metrics]
        best = [100 * (1 - max(h["test_accuracy"] for h in m["history"])) for m in metrics]
        assert row["final_error_mean"] == pytest.approx(np.mean(final))
        assert row["final_error_std"] == pytest.approx(np.std(final, ddof=1))
        assert row["best_error_mean"] == pytest.approx(np.mean(best))
        assert row["best_error_std"] == pytest.approx(np.std(best, ddof=1))
        seconds = [sum(h["seconds"] for h in m["history"]) for m in metrics]
        assert row["train_seconds_mean"] == pytest.approx(np.mean(seconds), abs=1e-3)
    table = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [(r["spec"], r["seeds"]) for r in table] == [("tiny-x0", "3 5"), ("tiny-x2", "3 5")]
    for r, row in zip(table, document["specs"], strict=True):
        assert float(r["final_error_mean"]) == pytest.approx(row["final_error_mean"])
        assert int(r["params"]) == row["params"]
    markdown = (out / "results.md").read_text()
    first = document["specs"][0]
    assert f"{first['final_error_mean']:.2f} ± {first['final_error_std']:.2f}" in markdown
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # the figure shows the same numbers, in the given order
    options = {"data": "digits", "epochs": 2, "batch_size": 32, "subset": 64}
    results = sweep(SweepConfig([str(p) for p in specs], str(out), [3, 5], options))
    figure = draw_results(results, "tiny")
    errors_axes, params_axes = figure.axes
    final_line = errors_axes.lines[0]
    assert list(final_line.get_ydata()) == pytest.approx(
        [row["final_error_mean"] for row in document["specs"]]
    )
    assert [bar.get_height() for bar in params_axes.patches] == pytest.approx(
        [row["params"] / 1e6 for row in document["specs"]]
    )
    assert [t.get_text() for t in params_axes.get_xticklabels()] == ["tiny-x0", "tiny-x2"]

    # plot: every run's curve, from its metrics.json
    runs = [run_folder(out, name, seed) for name in ("tiny-x0", "tiny-x2") for seed in (3, 5)]
    curves = read_curves([str(r) for r in runs])
    assert [c.label for c in curves] == [
        "tiny-x0 seed 3",
        "tiny-x0 seed 5",
        "tiny-x2 seed 3",
        "tiny-x2 seed 5",
    ]
    for curve, folder in zip(curves, runs, strict=True):
        history = json.loads((folder / "metrics.json").read_text())["history"]
        assert curve.test_error == [100 * (1 - h["test_accuracy"]) for h in history]
        assert curve.train_loss == [h["train_loss"] for h in history]
    drawn = draw_curves(curves)
    assert [list(line.get_ydata()) for line in drawn.axes[0].lines] == [c.test_error for c in curves]
    code, _, err = run_cli(capsys, "plot", *runs, "-o", tmp_path / "curves.pdf")
    assert code == 0, err
    assert (tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF-")


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(
    specs: list[Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sweep"
    spec = specs[1]
    # an interrupted run in the sweep's folder: 1 of 2 epochs done
    folder = run_folder(out, "tiny-x2", 0)
    settings = {"data": "digits", "epochs": 2, "batch_size": 32, "subset": 64, "seed": 0}
    train(TrainConfig(spec=str(spec), out=str(folder), stop_after=1, **settings))
    code, printed, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "2", "--out", out)
    assert code == 0, err
    assert "tiny-x2 seed 0: resuming" in printed
    straight = train(TrainConfig(spec=str(spec), out=str(tmp_path / "straight"), **settings))
    resumed = json.loads((folder / "metrics.json").read_text())
    assert resumed["state_dict_sha256"] == straight["state_dict_sha256"]  # exactly the same run
    assert resumed["history"][1]["test_accuracy"] == straight["history"][1]["test_accuracy"]
    capsys.readouterr()

    before = (folder / "last.pt").stat().st_mtime_ns
    code, printed, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "2", "--out", out)
    assert code == 0, err
    assert "tiny-x2 seed 0: finished, skipped" in printed and "epoch 1/2" not in printed
    assert (folder / "last.pt").stat().st_mtime_ns == before

    code, _, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "2", "--lr", "0.05", "--out", out)
    assert code == 2 and "holds a run with lr=0.1" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1", "1"], "--seeds lists a seed twice"),
        (["--warmup", "3"], "--warmup must be in [0, epochs)"),  # the recipe, checked before any run
    ],
)
def test_sweep_usage_errors(specs: list[Path], tmp_path: Path, capsys, args, message) -> None:
    options = ["--epochs", "1", *args] if "--epochs" not in args else args
    code, _, err = run_cli(capsys, "sweep", specs[0], "--data", "digits", "--out", tmp_path / "s", *options)
    assert code == 2 and message in err
    assert not (tmp_path / "s").exists()


def test_two_specs_with_one_name_are_refused(specs: list[Path], tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(specs[0].read_text())
    code, _, err = run_cli(
        capsys, "sweep", specs[0], copy, "--data", "digits", "--epochs", "1", "--out", tmp_path / "s"
    )
    assert code == 2 and "two specs are named tiny-x0" in err


def test_plot_needs_run_folders(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "plot", tmp_path, "-o", tmp_path / "c.png")
    assert code == 2 and "no metrics.json here" in err


def test_sweep_under_torchrun(specs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "cliquegen", "sweep", str(specs[0]), *OPTIONS, "--epochs", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((run_folder(out, "tiny-x0", 0) / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    first, second = metrics["state_dict_sha256"]
    assert first == second
    document = json.loads((out / "results.json").read_text())
    assert document["specs"][0]["final_error_mean"] == pytest.approx(100 * (1 - metrics["test_accuracy"]))
    assert result.stdout.count("wrote") == 4  # rank 0 alone writes results.json, .csv, .md, .png


def test_the_readme_experiment_is_the_digits_net_as_cliquenet_x() -> None:
    """docs/experiments holds X = 0..2 of the digits net; X = 3 is cliquenet-digits itself."""
    root = Path(__file__).resolve().parent.parent
    full = load_spec(root / "specs/digits/cliquenet-digits.yaml")
    for x in range(3):
        spec = load_spec(root / f"docs/experiments/cliquenet-digits-x{x}.yaml")
        assert spec.name == f"cliquenet-digits-x{x}"
        assert [b.partial for b in spec.resolved_blocks()] == [x, x]
        others = {"name", "description", "defaults"}
        assert spec.model_dump(exclude=others) == full.model_dump(exclude=others)
        schedule = {"schedule"}
        assert spec.defaults.model_dump(exclude=schedule) == full.defaults.model_dump(exclude=schedule)
