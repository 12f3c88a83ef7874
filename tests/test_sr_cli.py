"""`cliquegen eval` and `cliquegen upscale` of a trained super-resolution checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sr_train import TINY, photos

from cliquegen.cli.main import main
from cliquegen.train.config import TrainConfig
from cliquegen.train.loop import run
from cliquegen.train.sr_evaluate import evaluate_bicubic

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(best.pt of a 1-epoch tiny run, its folder of images)."""
    root = tmp_path_factory.mktemp("sr")
    data = photos(root / "hr")
    run(
        TrainConfig(
            spec=TINY,
            data=f"folder:{data}",
            out=str(root / "run"),
            epochs=1,
            batch_size=4,
            patch_size=16,
            patches_per_image=20,
        )
    )
    return root / "run" / "best.pt", data


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_eval_reports_the_model_and_bicubic(trained, capsys):
    weights, data = trained
    status, out, _ = cli(capsys, "eval", TINY, "--weights", weights, "--data", f"folder:{data}", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["images"] == 3 and len(result["per_image"]) == 3 and result["scale"] == 2
    baseline = evaluate_bicubic(f"folder:{data}", 2)
    for key in ("psnr_y", "ssim_y", "psnr_rgb"):
        assert result["bicubic"][key] == pytest.approx(baseline[key])
        assert result[key] == pytest.approx(np.mean([row[key] for row in result["per_image"]]))
    status, out, _ = cli(capsys, "eval", TINY, "--weights", weights, "--data", f"folder:{data}")
    assert status == 0 and "model    PSNR (Y)" in out and "bicubic  PSNR (Y)" in out


def test_a_grey_image_is_scored_as_grey_beside_the_bicubic_baseline(trained, tmp_path, capsys):
    """An RGB model enlarges a grey image as three equal channels; the result is scored as grey,
    so eval's bicubic scores equal --baseline's on a folder mixing grey and RGB images."""
    weights, data = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.open(data / "p0.png").convert("L").save(folder / "grey.png")
    Image.open(data / "p1.png").save(folder / "rgb.png")
    status, out, _ = cli(capsys, "eval", TINY, "--weights", weights, "--data", f"folder:{folder}", "--json")
    assert status == 0
    result = json.loads(out)
    baseline = evaluate_bicubic(f"folder:{folder}", 2)
    assert result["bicubic"]["per_image"] == baseline["per_image"]
    grey = result["per_image"][0]
    assert grey["image"].endswith("grey.png") and grey["psnr_y"] == pytest.approx(grey["psnr_rgb"])


def test_upscale_writes_each_image_and_reports_the_bad_ones(trained, tmp_path, capsys):
    weights, data = trained
    grey = tmp_path / "grey.png"
    Image.open(data / "p0.png").convert("L").save(grey)
    rgba = tmp_path / "alpha.png"
    Image.open(data / "p1.png").convert("RGBA").save(rgba)
    jpeg = tmp_path / "photo.jpg"
    Image.open(data / "p2.png").save(jpeg)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    status, text, err = cli(
        capsys,
        "upscale",
        TINY,
        "--weights",
        weights,
        grey,
        bad,
        rgba,
        jpeg,
        "-o",
        out,
        "--compare",
        tmp_path / "c.png",
    )
    assert status == 2
    assert err.strip().splitlines() == [
        f"cliquegen: error: {bad}: cannot read the image ({err.split('(', 1)[1].strip()}"
    ]
    for name, mode in (("grey.png", "L"), ("alpha.png", "RGBA"), ("photo.jpg", "RGB")):
        with Image.open(out / name) as image:
            assert image.mode == mode and image.size == (88, 80)
    assert not (out / "broken.png").exists() and (tmp_path / "c.png").stat().st_size > 0


def test_tiles_give_the_pixels_of_a_whole_pass(trained, tmp_path, capsys):
    weights, data = trained
    for folder, extra in (("whole", []), ("tiled", ["--tile", "12"])):
        assert (
            cli(
                capsys,
                "upscale",
                TINY,
                "--weights",
                weights,
                data / "p0.png",
                "-o",
                tmp_path / folder,
                *extra,
            )[0]
            == 0
        )
    whole = np.asarray(Image.open(tmp_path / "whole" / "p0.png")).astype(int)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "p0.png")).astype(int)
    assert np.abs(whole - tiled).max() <= 1  # float rounding may tip a pixel across a level


def test_a_classifier_is_refused(trained, tmp_path, capsys):
    weights, data = trained
    status, _, err = cli(
        capsys, "upscale", "cliquenet-k36-t12", "--weights", weights, data / "p0.png", "-o", tmp_path
    )
    assert status == 2 and "is a classifier" in err
    checkpoint = torch.load(weights, weights_only=True)
    checkpoint["info"] |= {"task": "classification", "scale": None, "pixel_range": None}
    torch.save(checkpoint, tmp_path / "c.pt")
    status, _, err = cli(
        capsys, "upscale", TINY, "--weights", tmp_path / "c.pt", data / "p0.png", "-o", tmp_path / "o"
    )
    assert status == 2 and "a classifier's weights" in err


def test_a_damaged_record_is_refused(trained, tmp_path, capsys):
    weights, data = trained
    checkpoint = torch.load(weights, weights_only=True)
    checkpoint["info"]["scale"] = 99
    torch.save(checkpoint, tmp_path / "d.pt")
    status, _, err = cli(capsys, "eval", TINY, "--weights", tmp_path / "d.pt", "--data", f"folder:{data}")
    assert status == 2 and "info.scale" in err
