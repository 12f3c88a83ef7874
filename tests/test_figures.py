"""The figures of runs and sweeps: curves.png (whole epochs, log loss axis, lr drops), the
plain labels of log axes, a sweep's points and its --subset, no pyplot anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cliquegen.train import sweep as sweep_module
from cliquegen.train.figures import draw_curves, draw_history, draw_results, lr_drops, plot_curves
from cliquegen.train.results import Curve, Run, SpecResult, data_text, results_markdown

pytest.importorskip("matplotlib", reason="needs the plot extra: pip install 'cliquegen[plot]'")

PNG = b"\x89PNG\r\n\x1a\n"


def history(lrs: list[float], losses: list[float] | None = None) -> list[dict[str, float]]:
    losses = losses or [2.3 / (epoch + 1) for epoch in range(len(lrs))]
    return [
        {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss,
            "train_accuracy": 0.5,
            "test_loss": loss * 1.1,
            "test_accuracy": 0.4,
            "test_top5": 0.8,
            "seconds": 1.0,
        }
        for epoch, (lr, loss) in enumerate(zip(lrs, losses, strict=True))
    ]


def shown_labels(axis) -> list[str]:
    """The labels of the major ticks inside the axis's view."""
    axis.axes.figure.draw_without_rendering()
    lo, hi = sorted(axis.get_view_interval())
    ticks = zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True)
    return [label.get_text() for tick, label in ticks if lo <= tick <= hi and label.get_text()]


def assert_plain(axis) -> None:
    """Every label of the axis reads as a plain number (not 2.28 x 10^0), and there are some."""
    labels = shown_labels(axis)
    assert len(labels) >= 2, labels
    for label in labels:
        float(label)  # raises for mathtext such as $\mathdefault{2.28\times10^{0}}$


def assert_whole_epochs(axis) -> None:
    axis.axes.figure.draw_without_rendering()
    lo, hi = axis.get_view_interval()
    ticks = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_lr_drops_are_the_step_schedule_drops() -> None:
    step = history([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert lr_drops(step) == [(3, 0.1, 0.01), (5, 0.01, 0.001)]
    assert lr_drops(history([0.1, 0.09, 0.07, 0.05])) == []  # a gentle cosine decay
    assert lr_drops(history([0.02, 0.06, 0.1, 0.1])) == []  # warm-up


def test_curves_have_whole_epochs_a_log_loss_axis_and_the_lr_drops() -> None:
    figure = draw_history(history([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]), "tiny on digits")
    loss_axes, accuracy_axes = figure.axes
    assert loss_axes.get_yscale() == "log" and accuracy_axes.get_yscale() == "linear"
    assert_plain(loss_axes.yaxis)
    for axes in (loss_axes, accuracy_axes):
        assert_whole_epochs(axes.xaxis)
        marked = [line.get_xdata()[0] for line in axes.lines if line.get_linestyle() == ":"]
        assert marked == [3, 5]
    notes = [text.get_text() for text in loss_axes.texts]
    assert notes == ["lr 0.1 → 0.01", "lr 0.01 → 0.001"]
    assert figure.get_suptitle() == "tiny on digits"


@pytest.mark.parametrize(
    "losses",
    [
        [2.32, 2.31, 2.30, 2.29, 2.28],  # less than a factor 2: no 1-2-5 tick inside
        [2.3, 0.9, 0.31, 0.12, 0.04],  # nearly two decades
        [2.3, 0.02, 2e-4, 2e-6, 2e-7],  # many decades
    ],
)
def test_log_axes_read_as_plain_numbers(losses: list[float]) -> None:
    figure = draw_history(history([0.1] * len(losses), losses), "run")
    assert_plain(figure.axes[0].yaxis)
    curves = [Curve("a seed 0", list(range(1, len(losses) + 1)), [50.0] * len(losses), losses)]
    plotted = draw_curves(curves)
    assert plotted.axes[1].get_yscale() == "log"
    assert_plain(plotted.axes[1].yaxis)
    for axes in plotted.axes:
        assert_whole_epochs(axes.xaxis)


def test_a_one_epoch_run_still_has_whole_epoch_ticks() -> None:
    figure = draw_history(history([0.1]), "one epoch")
    for axes in figure.axes:
        assert_whole_epochs(axes.xaxis)


def test_curves_png_is_written_inside_the_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    plot_curves(history([0.1, 0.1, 0.01]), out / "curves.png", "run", root=out)
    assert (out / "curves.png").read_bytes().startswith(PNG)
    (out / "elsewhere").symlink_to(tmp_path)
    with pytest.raises(Exception, match="outside|inside|escape|link"):
        plot_curves(history([0.1]), out / "elsewhere" / "curves.png", "run", root=out)
    assert not (tmp_path / "curves.png").exists()


def test_no_figure_uses_pyplot(tmp_path: Path) -> None:
    code = f"""
import sys
from cliquegen.train.figures import plot_curves, draw_results, draw_curves
from cliquegen.train.results import Run, SpecResult, Curve
h = [dict(epoch=e, lr=0.1, train_loss=1.0 / e, train_accuracy=0.5, test_loss=1.0, test_accuracy=0.5,
          test_top5=0.9, seconds=1.0) for e in (1, 2)]
plot_curves(h, __import__("pathlib").Path({str(tmp_path)!r}) / "curves.png", "t")
draw_results([SpecResult("a", 10, 10, [Run(0, "f", 10.0, 9.0, 1, 1.0)])], "t")
draw_curves([Curve("a", [1, 2], [50.0, 40.0], [1.0, 0.5])])
assert "matplotlib.figure" in sys.modules and "matplotlib.pyplot" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def results(*specs: tuple[str, list[float]]) -> list[SpecResult]:
    return [
        SpecResult(name, 1_000_000 * (k + 1), 10, [Run(s, "f", e, e - 1, 1, 1.0) for s, e in enumerate(errs)])
        for k, (name, errs) in enumerate(specs)
    ]


def test_sweep_figure_draws_points_not_a_trend() -> None:
    figure = draw_results(results(("a", [30.0, 32.0]), ("b", [20.0, 21.0]), ("c", [25.0, 24.0])), "t")
    top = figure.axes[0]
    data = [container.lines[0] for container in top.containers]
    assert len(data) == 2 and all(len(line.get_xdata()) == 3 for line in data)  # final, best: a point a spec
    assert all(line.get_linestyle() == "None" for line in top.lines)
    assert list(data[0].get_ydata()) == pytest.approx([31.0, 20.5, 24.5])


def test_subset_is_in_the_sweep_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {"data": "digits", "epochs": 2, "recipe": "paper-cifar", "batch_size": 32, "lr": 0.1}
    assert data_text(settings) == "digits"
    rows = [result.to_json() for result in results(("a", [30.0]))]
    assert "--subset" not in results_markdown(rows, settings)
    settings["subset"] = 64
    assert data_text(settings) == "digits (--subset 64)"
    markdown = results_markdown(rows, settings)
    assert markdown.startswith("# Sweep on digits (--subset 64): 2 epochs")
    assert "only the first 64 training and 64 test images (`--subset 64`)" in markdown
    titles = []
    real = draw_results

    def drawn(found, title):
        titles.append(title)
        return real(found, title)

    monkeypatch.setattr("cliquegen.train.figures.draw_results", drawn)
    monkeypatch.setattr(sweep_module, "draw_results", drawn, raising=False)  # where sweep imports it
    paths = sweep_module.write_results(results(("a", [30.0])), settings, [0], tmp_path)
    assert titles == ["digits (--subset 64), 2 epochs, seeds 0"]
    assert (tmp_path / "results.png").read_bytes().startswith(PNG) and len(paths) == 4
    assert "(--subset 64)" in (tmp_path / "results.md").read_text()
