"""What a newcomer tripped on: DDP's unused-parameter search, file modes, extending a finished
run, the progress bar and messages, a reader that closes the pipe early."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from rich.console import Console
from strategies import specs
from torch import fx, nn

from cliquegen.analysis.bench import SpecBench, rss_growths
from cliquegen.checkpoint.files import save_safetensors_file, save_weights_file
from cliquegen.cli.main import main
from cliquegen.models import build_fx, create_model
from cliquegen.spec.shipped import resolve_spec
from cliquegen.train.distributed import has_unused_parameters
from cliquegen.train.loop import TrainConfig, run


def _unused_by_backward(model: nn.Module, spec) -> set[str]:
    """The parameters that get no gradient from one forward and backward pass: the truth."""
    model.train()
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width)
    model(x).float().sum().backward()
    return {name for name, p in model.named_parameters() if p.grad is None}


@pytest.mark.parametrize(
    "name", ["cliquenet-digits", "densenet-121", "cliquenet-x0", "cliquenet-k36-t12-untied"]
)
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_fx_models_use_every_parameter_and_ddp_is_told_so(name: str, memory_efficient: bool) -> None:
    model = create_model(name, memory_efficient=memory_efficient)
    assert not has_unused_parameters(model)
    if name == "cliquenet-digits":  # the others are too large to run here; their graphs are read
        assert _unused_by_backward(model, resolve_spec(name)) == set()


@settings(max_examples=15, deadline=None)
@given(specs(max_blocks=2, max_layers=4))
def test_the_flag_agrees_with_a_backward_pass(spec) -> None:
    model = build_fx(spec)
    assert has_unused_parameters(model) == bool(_unused_by_backward(model, spec))


def test_a_parameter_the_graph_never_reads_is_found() -> None:
    model = build_fx(resolve_spec("cliquenet-digits"))
    model.register_parameter("spare", nn.Parameter(torch.zeros(3)))
    assert has_unused_parameters(model)
    assert has_unused_parameters(nn.Linear(2, 2))  # not an FX graph: DDP must search
    assert isinstance(model, fx.GraphModule)


# --- every file we write has the same mode -----------------------------------------------------------


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_safetensors_files_get_the_mode_of_every_other_file(tmp_path: Path, umask_022) -> None:
    pytest.importorskip("safetensors")
    state = create_model("cliquenet-digits").state_dict()
    save_weights_file(state, tmp_path / "w.pt")
    save_safetensors_file(state, tmp_path / "w.safetensors")
    assert (
        main(["export", "cliquenet-digits", "--format", "safetensors", "-o", str(tmp_path / "e.safetensors")])
        == 0
    )
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in tmp_path.iterdir()}
    assert modes == {"w.pt": 0o644, "w.safetensors": 0o644, "e.safetensors": 0o644}


# --- a finished run, the progress bar, the last line -------------------------------------------------

TINY = """\
name: tiny
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 8}
blocks:
  - {layers: 2, channels: 4}
"""


def test_a_finished_run_says_how_to_train_on(tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")
    spec, out = tmp_path / "tiny.yaml", tmp_path / "run"
    spec.write_text(TINY)
    shown = io.StringIO()
    console = Console(file=shown, force_terminal=True, width=150, highlight=False)
    options = {"data": "digits", "batch_size": 32, "subset": 64, "epochs": 1}
    run(TrainConfig(spec=str(spec), out=str(out), **options), console=console)
    printed = shown.getvalue()
    assert "loss -" in printed and "loss nan" not in printed  # no step yet: no mean loss
    assert "after 1 epoch (best" in printed
    train = ["train", str(spec), "--data", "digits", "--batch-size", "32", "--subset", "64"]
    assert main([*train, "--epochs", "2", "--resume", "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert f"--resume: {out} finished its 1 epoch" in message
    assert f"cliquegen train SPEC --finetune {out / 'last.pt'} --epochs N --lr 0.1 --out NEW_DIR" in message
    assert main([*train, "--epochs", "1", "--lr", "0.05", "--resume", "--out", str(out)]) == 2
    assert (
        f"--resume: {out} holds a run with lr=0.1; resume with the same settings" in capsys.readouterr().err
    )
    # the advice works
    assert (
        main([*train, "--epochs", "1", "--finetune", str(out / "last.pt"), "--out", str(tmp_path / "more")])
        == 0
    )


# --- bench on a tiny model ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak reset")
def test_bench_memory_counts_a_step_without_the_process_one_time_costs() -> None:
    first, step = rss_growths("cliquenet-digits", 2, memory_efficient=True, threads=1, samples=1)
    # the first checkpoint imports torch._dynamo and more (tens of MiB); a later step needs far less
    assert step is not None and first > 20 * 2**20 > 4 * step


def test_bench_says_why_memory_efficient_looks_worse_on_a_tiny_model() -> None:
    figures = SpecBench(
        "tiny", 4, 1, 0.02, 0.02, 0.02, 0.01, 0.03, 2 << 20, 1 << 20,
        peak_rss_growth=21 << 20, peak_rss_growth_memory_efficient=95 << 20,
        step_rss_growth=3 << 19, step_rss_growth_memory_efficient=1 << 20,
    )  # fmt: skip
    text = "\n".join(figures.lines())
    assert "peak RSS growth of a step 1.5 MiB; memory_efficient 1.0 MiB (a second step)" in text
    assert "peak RSS growth, 1st step 21.0 MiB; memory_efficient 95.0 MiB" in text
    assert "outweighs the activations it saves" in text
