"""The super-resolution --compare figure: crops where the model changed most, with scores."""

import numpy as np
import pytest

from cliquegen.draw.figure import save_figure
from cliquegen.errors import UsageError
from cliquegen.train.sr_figures import busiest_window, compare, draw_compare
from cliquegen.train.sr_metrics import sr_metrics

pytest.importorskip("matplotlib")
pytest.importorskip("skimage.metrics")


def image(height, width, channels=3, seed=0):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_the_window_where_two_images_differ_most():
    a = np.zeros((40, 50, 3), np.uint8)
    b = a.copy()
    b[22:30, 31:37] = 200  # an 8x6 blob
    b[2, 2] = 255  # a lone pixel elsewhere
    top, left = busiest_window(a, b, 8)
    assert (top, left) == (22, 29)  # first of the windows that hold the whole blob: rows 22, columns 29..31
    assert busiest_window(a, a, 8) == (0, 0)


def test_a_comparison_crops_the_same_box_of_every_image_and_scores_the_whole():
    hr = image(64, 60)
    bicubic = hr // 2 + 60
    model = hr.copy()
    model[10:20] = bicubic[10:20]  # the model matches bicubic there: not the interesting part
    row = compare("pic", bicubic, model, hr, 2, crop=24)
    top, left, height, width = row.box
    assert (height, width) == (24, 24) and not 10 <= top < 20
    assert [p.label for p in row.panels] == ["bicubic", "model", "HR"]
    for panel, whole in zip(row.panels, (bicubic, model, hr), strict=True):
        assert np.array_equal(panel.pixels, whole[top : top + 24, left : left + 24])
    assert row.panels[0].psnr_y == sr_metrics(bicubic, hr, 2).psnr_y
    assert row.panels[1].ssim_y == sr_metrics(model, hr, 2).ssim_y
    assert row.panels[2].psnr_y is None
    assert np.array_equal(row.overview, model)


def test_without_the_original_there_are_no_scores():
    row = compare("grey", image(30, 20, 1), image(30, 20, 1, seed=1), None, 2, crop=96)
    assert [p.label for p in row.panels] == ["bicubic", "model"]
    assert all(p.psnr_y is None for p in row.panels)
    assert row.box[2:] == (20, 20) and row.panels[0].pixels.shape == (20, 20)


def test_images_of_different_sizes_are_refused():
    with pytest.raises(UsageError, match="pic: the images to compare differ in size"):
        compare("pic", image(30, 20), image(30, 22), None, 2)
    with pytest.raises(UsageError, match="expected an 8-bit"):
        compare("pic", image(30, 20).astype(float), image(30, 20), None, 2)


def test_the_figure_has_a_row_per_image_and_is_reproducible(tmp_path):
    hr = image(48, 48)
    rows = [
        compare("with original", hr // 2, hr // 2 + 1, hr, 2, crop=16),
        compare("without", image(30, 30, 1), image(30, 30, 1, seed=2), None, 3, crop=16),
    ]
    figure = draw_compare(rows)
    axes = figure.get_axes()
    assert len(axes) == 2 * 4  # overview + bicubic, model, HR
    titles = [a.get_title() for a in axes]
    assert titles[0] == "with original" and titles[4] == "without"
    psnr = rows[0].panels[0].psnr_y
    assert titles[1] == f"bicubic\n{psnr:.2f} dB / {rows[0].panels[0].ssim_y:.4f}"
    assert titles[5:7] == ["bicubic", "model"]
    assert all(len(a.get_images()) == 1 for a in axes[:7]) and not axes[7].get_images()
    assert len(axes[0].patches) == 1  # the crop's box on the overview
    first = save_figure(figure, tmp_path / "a.png").read_bytes()
    assert save_figure(draw_compare(rows), tmp_path / "b.png").read_bytes() == first


def test_nothing_to_draw_is_an_error():
    with pytest.raises(UsageError, match="nothing to compare"):
        draw_compare([])
