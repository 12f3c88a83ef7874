"""Super-resolution training through `cliquegen train`: the task's data, loss, validation
against bicubic, run folder and resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cliquegen.checkpoint.info import ModelInfo
from cliquegen.data.sr import PATCHES_PER_IMAGE
from cliquegen.errors import UsageError
from cliquegen.spec.network import size_multiple
from cliquegen.spec.shipped import resolve_spec
from cliquegen.train.config import SR_HISTORY_COLUMNS, TrainConfig
from cliquegen.train.loop import run
from cliquegen.train.results import read_curves
from cliquegen.train.sr_evaluate import evaluate_sr
from cliquegen.train.sr_task import task_settings
from cliquegen.train.sweep import SweepConfig, sweep

TINY = "specs/sr/srcliquenet-x2-tiny.yaml"


def photos(folder: Path, count: int = 3, size: tuple[int, int] = (40, 44)) -> Path:
    image_module = pytest.importorskip("PIL.Image")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(count):
        planes = [128 + 90 * np.sin(x / (2 + i + c) + y / (3 + c)) for c in range(3)]
        pixels = np.stack(planes, -1) + rng.normal(0, 8, (*size, 3))
        image_module.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def config(tmp_path: Path, **changes) -> TrainConfig:
    options = dict(
        spec=TINY, data=f"folder:{photos(tmp_path / 'hr')}", out=str(tmp_path / "run"), epochs=2,
        batch_size=4, patch_size=16, lr=1e-3, patches_per_image=20,
    )  # fmt: skip
    return TrainConfig(**(options | changes))


def test_a_super_resolution_run_writes_its_folder(tmp_path):
    result = run(config(tmp_path))
    out = Path(result.out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert tuple(rows[0]) == SR_HISTORY_COLUMNS and len(rows) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "super-resolution" and metrics["scale"] == 2
    assert metrics["recipe"] == "sr" and metrics["optimizer"] == "adam" and metrics["loss"] == "l1"
    last = metrics["history"][-1]
    # one held-out image of 40x44 (mod-cropped: 40x44): bicubic's score is its own, each epoch
    assert 10 < last["bicubic_psnr_y"] < 60 and 0 < last["bicubic_ssim_y"] <= 1
    assert last["bicubic_psnr_y"] == metrics["history"][0]["bicubic_psnr_y"]
    assert metrics["best"]["test_psnr_y"] == max(r["test_psnr_y"] for r in metrics["history"])
    best = torch.load(out / "best.pt", weights_only=True)
    info = ModelInfo.from_dict(best["info"], "best.pt")
    assert (info.task, info.scale, info.pixel_range) == ("super-resolution", 2, [0.0, 1.0])
    assert info.mean is None and info.classes is None
    assert (out / "curves.png").stat().st_size > 0


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    whole = run(config(tmp_path, out=str(tmp_path / "whole")))
    run(config(tmp_path, out=str(tmp_path / "parts"), stop_after=1))
    parts = run(config(tmp_path, out=str(tmp_path / "parts"), resume=True))
    assert parts.metrics["state_dict_sha256"] == whole.metrics["state_dict_sha256"]
    assert parts.metrics["history"][-1]["test_psnr_y"] == pytest.approx(
        whole.metrics["history"][-1]["test_psnr_y"]
    )


def test_l2_loss_is_mean_squared_error(tmp_path):
    result = run(config(tmp_path, epochs=1, loss="l2"))
    assert result.metrics["loss"] == "l2"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patch_size": 15}, "multiple of 2"),
        ({"num_classes": 3}, "--num-classes is for classification"),
        ({"data": "digits"}, "folder:DIR"),
        ({"loss": "l3"}, "unknown --loss"),
        ({"label_smoothing": 0.1}, "--label-smoothing is for classification"),
    ],
)
def test_bad_settings_are_refused(tmp_path, changes, message):
    with pytest.raises(UsageError, match=message):
        run(config(tmp_path, **changes))


@pytest.mark.parametrize(("option", "value"), [("patch_size", 32), ("patches_per_image", 5), ("loss", "l2")])
def test_classification_refuses_the_super_resolution_options(tmp_path, option, value):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(UsageError, match=f"{flag} is for specs with an image output"):
        run(TrainConfig(spec="cliquenet-s0", data="digits", out=str(tmp_path / "c"), **{option: value}))


def test_an_epoch_is_the_given_patches_of_every_training_image(tmp_path):
    """3 photographs: 2 train, 1 held out; 6 patches of each is 12 patches, 3 batches of 4."""
    result = run(config(tmp_path, epochs=1, patches_per_image=6))
    assert result.metrics["patches_per_image"] == 6
    assert result.metrics["history"][0]["train_loss"] > 0
    settings = task_settings(
        TrainConfig(spec=TINY, data="folder:x", out=str(tmp_path / "d")), resolve_spec(TINY)
    )
    assert settings["patches_per_image"] == PATCHES_PER_IMAGE == 2000
    with pytest.raises(UsageError, match="--patches-per-image must be at least 1"):
        run(config(tmp_path, patches_per_image=0))
    with pytest.raises(UsageError, match="patches_per_image"):  # an epoch of another length: a new run
        run(config(tmp_path, epochs=2, patches_per_image=7, resume=True))


def test_the_size_multiple_follows_the_wavelet_levels():
    assert size_multiple(resolve_spec(TINY)) == 1
    assert size_multiple(resolve_spec("specs/sr/pdasr-clique-light.yaml")) >= 2


def test_a_sweep_of_super_resolution_specs_tabulates_psnr(tmp_path):
    options = {
        "data": f"folder:{photos(tmp_path / 'hr')}", "epochs": 1, "batch_size": 4, "patch_size": 16,
        "patches_per_image": 20,
    }  # fmt: skip
    results = sweep(SweepConfig([TINY], str(tmp_path / "sweep"), [0, 1], options))
    (row,) = [result.to_json() for result in results]
    assert len(row["runs"]) == 2 and row["psnr_y_mean"] > 0 and 0 < row["bicubic_ssim_y"] <= 1
    assert "final_error_mean" not in row
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert "| PSNR (Y) | SSIM (Y) |" in table and f"{row['bicubic_psnr_y']:.2f}" in table
    header = (tmp_path / "sweep" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("spec,params,flops,seeds,psnr_y_mean")
    # a second sweep finds the runs finished: same identity, nothing trained again
    again = sweep(SweepConfig([TINY], str(tmp_path / "sweep"), [0, 1], options))
    assert again[0].to_json()["psnr_y_mean"] == row["psnr_y_mean"]


def test_plot_refuses_a_super_resolution_run_clearly(tmp_path):
    result = run(config(tmp_path, epochs=1))
    with pytest.raises(UsageError, match="a super-resolution run"):
        read_curves([str(result.out)])


def test_validation_scores_are_those_of_eval(tmp_path):
    photos(tmp_path / "hr" / "train", count=2)
    photos(tmp_path / "hr" / "val", count=1, size=(36, 30))
    data = f"folder:{tmp_path / 'hr'}"
    result = run(config(tmp_path, data=data, epochs=1))
    record = result.metrics["history"][-1]
    scores = evaluate_sr(TINY, result.best, data)
    assert scores["images"] == 1
    assert record["bicubic_psnr_y"] == pytest.approx(scores["bicubic"]["psnr_y"], abs=1e-9)
    assert record["bicubic_ssim_y"] == pytest.approx(scores["bicubic"]["ssim_y"], abs=1e-9)
    # the model's input is made in float32 during training and in float64 by eval
    assert record["test_psnr_y"] == pytest.approx(scores["psnr_y"], abs=0.05)
