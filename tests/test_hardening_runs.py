"""Run folders under attack: planted links, edited specs, two processes on one folder, diverged
runs, empty test splits, full disks, damaged checkpoints and hand-edited metrics.

Every case runs the real command (in-process through ``main``, or a fresh interpreter where it
needs another process or a file size limit) on the 8x8 digits with a tiny spec and one or two
epochs.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from cliquegen import cli
from cliquegen.errors import UsageError
from cliquegen.train import evaluate as evaluate_module
from cliquegen.train import loop, rundir
from cliquegen.train import task as task_module
from cliquegen.train.config import RUN_FILES, DivergedError, TrainConfig
from cliquegen.train.evaluate import evaluate_model
from cliquegen.train.rundir import LOCK, folder_lock

pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")

ROOT = Path(__file__).resolve().parent.parent
TINY = """\
name: tiny-x0
description: "a tiny clique network for the 8x8 digits"
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 8}
defaults: {dropout: 0.1, schedule: {stages: 2}}
blocks:
  - {layers: 2, channels: 6}
"""
OPTIONS = ("--data", "digits", "--batch-size", "32", "--subset", "32")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A run folder with epoch 1 of 2 done (last.pt, best.pt, metrics), trained once."""
    folder = tmp_path_factory.mktemp("interrupted")
    (folder / "tiny.yaml").write_text(TINY)
    settings = {"data": "digits", "epochs": 2, "batch_size": 32, "subset": 32, "stop_after": 1}
    loop.run(TrainConfig(spec=str(folder / "tiny.yaml"), out=str(folder / "run"), **settings))
    return folder / "run"


def copy_run(interrupted: Path, to: Path) -> Path:
    shutil.copytree(interrupted, to)
    return to


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def strict_json(path: Path):
    def refuse(name: str):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# --- sweeps stay inside --out ------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["run folder", "results.json"])
def test_a_sweep_writes_nothing_outside_out_through_planted_links(spec, tmp_path, capsys, planted):
    pytest.importorskip("matplotlib")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("precious")
    out = tmp_path / "sweep"
    out.mkdir()
    if planted == "run folder":
        (out / "tiny-x0").symlink_to(outside, target_is_directory=True)
    else:
        (out / "results.json").symlink_to(outside / "keep")
    code, _, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "1", "--out", out)
    assert code == 2 and "outside the output folder" in one_line(err)
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert (outside / "keep").read_text() == "precious"


# --- a run is what it trained, not its name ----------------------------------------------------


def test_an_edited_spec_is_never_paired_with_the_old_run(spec, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep[red]"  # also: the paths print literally, not as rich markup
    args = ("sweep", spec, *OPTIONS, "--epochs", "1", "--out", out)
    code, printed, err = run_cli(capsys, *args)
    assert code == 0, err
    assert f"[1/1] tiny-x0 seed 0: training ({out / 'tiny-x0' / 'seed0'})" in printed
    results = (out / "results.json").read_bytes()
    original = spec.read_text()
    spec.write_text(original.replace("channels: 6}", "channels: 12}"))  # the same name, another network
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "holds a run with another version of the spec tiny-x0 (sha256 " in one_line(err)
    assert (out / "results.json").read_bytes() == results

    spec.write_text(original)
    code, printed, err = run_cli(capsys, *args)
    assert code == 0 and "tiny-x0 seed 0: finished, skipped" in printed, err

    metrics_file = out / "tiny-x0" / "seed0" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    del metrics["spec_sha256"]  # as an older cliquegen wrote it
    metrics_file.write_text(json.dumps(metrics))
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "no record of which spec file it trained" in one_line(err)


def test_resume_refuses_another_version_of_the_spec(spec, interrupted, tmp_path, capsys):
    run = copy_run(interrupted, tmp_path / "run")
    spec.write_text(TINY.replace("dropout: 0.1", "dropout: 0.3"))  # the same weights' shapes
    before = (run / "last.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "2", "--out", run, "--resume")
    assert code == 2 and "another version of the spec tiny-x0" in one_line(err)
    assert (run / "last.pt").read_bytes() == before


@pytest.mark.parametrize("left", ["metrics without last.pt", "best.pt alone", "best.pt as last.pt"])
def test_a_sweep_run_that_cannot_be_continued_is_refused_without_advising_resume(
    spec, interrupted, tmp_path, capsys, left
):
    out = tmp_path / "sweep"
    folder = copy_run(interrupted, out / "tiny-x0" / "seed0")
    keep = {
        "metrics without last.pt": {"metrics.json", "metrics.csv", "best.pt"},
        "best.pt alone": {"best.pt"},
        "best.pt as last.pt": {"best.pt", "last.pt", "metrics.json"},
    }[left]
    if left == "best.pt as last.pt":
        shutil.copy(folder / "best.pt", folder / "last.pt")
    for name in set(RUN_FILES) - keep:
        (folder / name).unlink(missing_ok=True)
    code, _, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "2", "--out", out)
    line = one_line(err)
    assert code == 2 and "--resume" not in line and "--force" not in line
    assert "no last.pt" in line if left != "best.pt as last.pt" else "holds only weights" in line


# --- one process per folder ---------------------------------------------------------------------

HOLD = """\
import sys
from pathlib import Path
from cliquegen.train.rundir import folder_lock
folder = Path(sys.argv[1])
with folder_lock(folder, folder):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_train_or_sweep_on_one_folder_exits_2(spec, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        for command in ("train", "sweep"):
            code, _, err = run_cli(capsys, command, spec, *OPTIONS, "--epochs", "1", "--out", out)
            assert code == 2
            assert one_line(err) == (
                f"cliquegen: error: {out} is in use by another cliquegen train or sweep (pid {holder.pid}); "
                "wait for it to finish, or choose another --out"
            )
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (out / LOCK).exists()  # the holder removed it
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "1", "--out", out)
    assert code == 0, err
    assert not (out / LOCK).exists()


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "lock file"])
def test_a_lock_left_by_a_dead_process_blocks_no_one(tmp_path, monkeypatch, flock):
    if not flock:
        monkeypatch.setattr(rundir, "fcntl", None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / LOCK).write_text(dead.stdout)
    with folder_lock(tmp_path, tmp_path):
        assert (tmp_path / LOCK).read_text() == f"{os.getpid()}\n"
        with (
            pytest.raises(
                UsageError, match=rf"in use by another cliquegen train or sweep \(pid {os.getpid()}\)"
            ),
            folder_lock(tmp_path, tmp_path),
        ):
            pass
    assert not (tmp_path / LOCK).exists()


@pytest.mark.parametrize(
    ("target", "message"), [("outside", "outside the output folder"), ("run", "cannot lock")]
)
def test_a_lock_file_planted_as_a_link_is_not_followed(tmp_path, target, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).symlink_to(tmp_path / target / "created")
    with pytest.raises(UsageError, match=message), folder_lock(out, out):
        pass
    assert not (tmp_path / target / "created").exists()


# --- diverged runs ------------------------------------------------------------------------------


def test_a_run_diverged_in_its_first_epoch_stops_and_writes_no_checkpoint(spec, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(spec=str(spec), data="digits", out=str(out), epochs=2, batch_size=32, subset=32)
    with pytest.raises(
        DivergedError, match=r"^training diverged in epoch 1: the (training|test) loss is nan"
    ):
        loop.run(dataclasses.replace(config, lr=1e30))
    assert sorted(p.name for p in out.iterdir()) == []  # no checkpoint, no NaN metrics, no lock


def test_a_run_that_diverges_later_keeps_its_last_finite_epoch(spec, tmp_path, capsys, monkeypatch):
    real = loop._train_epoch

    def poisoned(run, net, loader, epoch):  # the weights blow up during the second epoch
        totals = real(run, net, loader, epoch)
        if epoch == 1:
            with torch.no_grad():
                next(run.model.parameters()).fill_(float("inf"))
        return totals

    monkeypatch.setattr(loop, "_train_epoch", poisoned)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "3", "--out", out)
    line = one_line(err)
    assert code == 2 and "training diverged in epoch 2" in line and f"{out / 'last.pt'} keeps epoch 1" in line
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(
        t.isfinite().all() for t in last["model"].values() if t.is_floating_point()
    )
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    metrics = strict_json(out / "metrics.json")
    assert metrics["epochs_done"] == 1 and len(metrics["history"]) == 1


# --- an empty test split ------------------------------------------------------------------------


def test_an_empty_test_split_is_an_error_not_zero_accuracy(spec, interrupted, tmp_path, capsys, monkeypatch):
    def without_test_images(load):
        def load_data(*args, **kwargs):
            data = load(*args, **kwargs)
            return dataclasses.replace(data, test=Subset(data.test, []))

        return load_data

    monkeypatch.setattr(task_module, "load_data", without_test_images(task_module.load_data))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "1", "--out", out)
    assert code == 2 and one_line(err) == (
        "cliquegen: error: digits has no test images: a run needs some to measure its accuracy"
    )
    assert not out.exists()
    monkeypatch.setattr(evaluate_module, "load_data", without_test_images(evaluate_module.load_data))
    code, printed, err = run_cli(
        capsys, "eval", spec, "--weights", interrupted / "best.pt", "--data", "digits"
    )
    assert code == 2 and "no test images" in one_line(err) and "top-1" not in printed
    with pytest.raises(UsageError, match="no test images"):
        evaluate_model(torch.nn.Linear(1, 1), Subset(list(range(4)), []), torch.device("cpu"), 8)


# --- --force and TensorBoard --------------------------------------------------------------------


def test_force_removes_the_earlier_runs_tensorboard_events(spec, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    args = ("train", spec, *OPTIONS, "--epochs", "1", "--out", out, "--tensorboard")
    assert run_cli(capsys, *args)[0] == 0
    first = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(first) == 1
    assert run_cli(capsys, *args, "--force")[0] == 0
    second = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(second) == 1 and second != first
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    code, _, err = run_cli(capsys, *args)  # the events alone are an earlier run too
    assert code == 2 and "already holds a run (tensorboard/)" in one_line(err)


# --- user text prints as it is ------------------------------------------------------------------


def test_paths_print_literally_not_as_rich_markup(spec, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, printed, err = run_cli(capsys, "build", spec, "-o", "gen[/]")
    assert code == 0 and "Traceback" not in err
    assert printed.startswith("wrote gen[/]/tiny_x0.py: ")
    name = "m[bold]:smile:.safetensors"
    code, printed, _ = run_cli(capsys, "export", spec, "--format", "safetensors", "-o", name)
    assert code == 0 and printed.startswith(f"wrote {name} (safetensors, ")
    code, printed, _ = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "1", "--out", "runs[bold]")
    assert code == 0 and "checkpoints and metrics in runs[bold]" in printed


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)


def test_a_full_disk_during_train_is_one_line_and_leaves_no_file(spec, tmp_path, capsys, full_disk):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "1", "--out", out)
    assert code == 2
    assert one_line(err) == f"cliquegen: error: cannot write {out / 'last.pt'}: No space left on device"
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program", "safetensors"])
def test_a_full_disk_during_export_leaves_no_temporary_file(spec, tmp_path, capsys, full_disk, fmt):
    target = tmp_path / "out" / f"m.{fmt}"
    code, _, err = run_cli(capsys, "export", spec, "--format", fmt, "-o", target)
    assert code == 2 and one_line(err) == f"cliquegen: error: cannot write {target}: No space left on device"
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "SPEC", *OPTIONS, "--epochs", "1", "--out", "OUT/run"],
        ["export", "SPEC", "--format", "torchscript", "-o", "OUT/m.torchscript"],
    ],
    ids=["train", "export"],
)
def test_a_file_size_limit_in_a_real_process(spec, tmp_path, argv):
    """torch's own writers crashed on a failed write (train: a traceback; export: an abort that
    left the temporary file); RLIMIT_FSIZE makes every write past 8 KiB fail with EFBIG."""
    resource = pytest.importorskip("resource")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    out = tmp_path / "out"
    out.mkdir()
    argv = [a.replace("SPEC", str(spec)).replace("OUT", str(out)) for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-m", "cliquegen", *argv], capture_output=True, text=True, env=env,
        preexec_fn=limit, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1].endswith(": File too large")
    assert [p.name for p in out.rglob("*") if p.is_file()] == []


# --- damaged checkpoints on --resume --------------------------------------------------------------


def _set(path: str, value):
    def change(checkpoint: dict) -> None:
        *keys, last = path.split(".")
        target = checkpoint
        for key in keys:
            target = target[int(key) if key.isdigit() else key]
        target[int(last) if last.isdigit() else last] = value

    return change


DAMAGE = {
    "epoch text": (_set("epoch", "1"), "epoch must be a whole number"),
    "epoch past the history": (_set("epoch", 5), "history must be 5 epoch records long"),
    "settings": (_set("settings", None), "settings must be a dictionary"),
    "history": (_set("history", [{"epoch": 1}]), "history[0].lr must be a number"),
    "history length": (
        _set("history", []),
        "history must be 1 epoch records long (one per epoch done), found 0",
    ),
    "best": (_set("best", None), "best must be a dictionary"),
    "rng empty": (_set("rng", []), "rng must be a list of RNG states"),
    "rng torch": (_set("rng.0.torch", torch.zeros(3)), "rng[0].torch must be a 1-d uint8 tensor"),
    "rng python": (_set("rng.0.python", [3, [0] * 10, None]), "rng[0].python must be the state"),
    "optimizer groups": (_set("optimizer.param_groups", "x"), "optimizer.param_groups must be a list"),
    "optimizer lr": (_set("optimizer.param_groups.0.lr", "fast"), "param_groups[0].lr must be a finite"),
    "momentum shape": (
        _set("optimizer.state.0.momentum_buffer", torch.zeros(3)),
        "optimizer.state[0].momentum_buffer must be a float tensor of shape",
    ),
    "scheduler keys": (_set("scheduler", {"last_epoch": 1}), "scheduler must be a dictionary with the keys"),
    "scheduler lr": (_set("scheduler.base_lrs", ["x"]), "scheduler.base_lrs[0] must be a finite number"),
    "scheduler epoch": (_set("scheduler.last_epoch", 7), "scheduler.last_epoch must be 1"),
    "model": (_set("model", {"x": torch.zeros(1)}), "last.pt"),
    "info": (_set("info", None), "no record of which spec file it trained"),
    "best.pt": (None, "holds only weights (as best.pt does)"),
    "state_dict": (None, "holds a bare state_dict"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_last_pt_is_refused_with_the_field_named(spec, interrupted, tmp_path, capsys, case):
    run = copy_run(interrupted, tmp_path / "run")
    last = run / "last.pt"
    change, message = DAMAGE[case]
    checkpoint = torch.load(last, weights_only=True)
    if case == "best.pt":
        shutil.copy(run / "best.pt", last)
    elif case == "state_dict":
        torch.save(checkpoint["model"], last)
    else:
        change(checkpoint)
        torch.save(checkpoint, last)
    before = last.read_bytes()
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "2", "--out", run, "--resume")
    assert "Traceback" not in err
    line = err.splitlines()[0]  # weights that do not fit list the tensors on the lines below
    assert code == 2 and line.startswith("cliquegen: error: ") and str(last) in line and message in line
    assert last.read_bytes() == before


def test_an_undamaged_last_pt_still_resumes(spec, interrupted, tmp_path, capsys):
    run = copy_run(interrupted, tmp_path / "run")
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "2", "--out", run, "--resume")
    assert code == 0, err
    assert strict_json(run / "metrics.json")["epochs_done"] == 2


# --- hand-edited metrics.json ---------------------------------------------------------------------

EDITS = {
    "NaN": (
        lambda text: text.replace('"test_accuracy": 0', '"test_accuracy": NaN', 1),
        "NaN is not a number",
    ),
    "not JSON": (lambda text: text[:-10], "cannot read the run's metrics"),
    "deep": (lambda text: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "history": (lambda text: json.dumps({"history": "x"}), "history must be a list of epochs"),
    "record": (
        lambda text: json.dumps({**json.loads(text), "history": [{"epoch": 1, "lr": 0.1}]}),
        "history[0].train_loss must be a number",
    ),
    "accuracy": (
        lambda text: text.replace('"test_accuracy": 0', '"test_accuracy": 7', 1),
        "history[0].test_accuracy must be a number in [0, 1]",
    ),
    "best": (lambda text: json.dumps({**json.loads(text), "best": None}), "best must be an object"),
}


@pytest.mark.parametrize("command", ["plot", "sweep"])
@pytest.mark.parametrize("edit", list(EDITS))
def test_a_hand_edited_metrics_json_is_a_clean_error(spec, interrupted, tmp_path, capsys, command, edit):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep"
    folder = copy_run(interrupted, out / "tiny-x0" / "seed0")
    change, message = EDITS[edit]
    metrics = folder / "metrics.json"
    metrics.write_text(change(metrics.read_text()))
    if command == "plot":
        code, _, err = run_cli(capsys, "plot", folder, "-o", tmp_path / "curves.png")
    else:
        code, _, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "2", "--out", out)
    line = one_line(err)
    assert code == 2 and str(metrics) in line and message in line


@pytest.mark.parametrize("command", ["plot", "sweep"])
def test_a_fifo_as_metrics_json_does_not_hang(spec, tmp_path, capsys, command):
    pytest.importorskip("matplotlib")
    folder = tmp_path / "sweep" / "tiny-x0" / "seed0"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "metrics.json")
    if command == "plot":
        code, _, err = run_cli(capsys, "plot", folder, "-o", tmp_path / "curves.png")
        assert code == 2 and "no metrics.json here" in one_line(err)
    else:
        code, _, err = run_cli(capsys, "sweep", spec, *OPTIONS, "--epochs", "1", "--out", tmp_path / "sweep")
        assert code == 2 and "not a regular file" in one_line(err)


# --- other things in the way ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_out_is_a_file(spec, tmp_path, capsys, command):
    pytest.importorskip("matplotlib")
    plain = tmp_path / "plain"
    plain.write_text("x")
    code, _, err = run_cli(capsys, command, spec, *OPTIONS, "--epochs", "1", "--out", plain)
    assert (
        code == 2 and one_line(err) == f"cliquegen: error: cannot create {plain}: it is a file, not a folder"
    )
    assert plain.read_text() == "x"


def test_tensorboard_as_a_file(spec, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("x")
    code, _, err = run_cli(capsys, "train", spec, *OPTIONS, "--epochs", "1", "--out", out, "--tensorboard")
    assert code == 2 and "tensorboard is a file, not a folder" in one_line(err)


def test_plot_labels_are_text_not_mathtext(interrupted, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    folder = copy_run(interrupted, tmp_path / "a$\\frac$")
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "spec": "x$\\frac$"}))
    other = copy_run(folder, tmp_path / "b")  # two runs with one label: the folders tell them apart
    code, _, err = run_cli(capsys, "plot", folder, other, "-o", tmp_path / "curves.png")
    assert code == 0 and "Traceback" not in err
