"""cliquegen.train.sr_metrics: PSNR and SSIM as super-resolution papers compute them."""

import math
import sys

import numpy as np
import pytest
import torch

from cliquegen.errors import UsageError
from cliquegen.train.sr_metrics import SRMetrics, mean_metrics, psnr, sr_metrics, ssim, to_uint8, to_y


def needs_skimage():
    pytest.importorskip("skimage.metrics", reason="SSIM needs scikit-image: pip install 'cliquegen[train]'")


def random_image(shape, seed=0, low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(
    ("rgb", "y"),
    [
        ((0, 0, 0), 16.0),
        ((255, 255, 255), 235.0),  # 16 + 65.481 + 128.553 + 24.966
        ((255, 0, 0), 81.481),
        ((0, 255, 0), 144.553),
        ((0, 0, 255), 40.966),
        ((51, 102, 204), 16 + (65.481 * 51 + 128.553 * 102 + 24.966 * 204) / 255),
    ],
)
def test_luma_of_known_colours(rgb, y):
    pixel = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    assert to_y(pixel)[0, 0] == pytest.approx(y, abs=1e-12)


def test_a_grey_image_is_its_own_luma():
    grey = random_image((5, 6))
    assert np.array_equal(to_y(grey), grey.astype(np.float64))
    assert np.array_equal(to_y(grey[:, :, None]), grey.astype(np.float64))


def test_psnr_of_a_known_mean_squared_error():
    a = np.zeros((4, 5))
    b = np.full((4, 5), 5.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))  # 34.151 dB
    b[0, 0] = 25.0  # MSE = (19 * 25 + 625) / 20 = 55
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 55))
    assert psnr(a, a) == math.inf


def test_psnr_on_y_and_on_rgb_of_a_shift_in_red():
    needs_skimage()
    hr = random_image((20, 20, 3), low=20, high=230)
    sr = hr.copy()
    sr[:, :, 0] += 10
    result = sr_metrics(sr, hr, 0, round_y=False)
    assert result.psnr_rgb == pytest.approx(10 * math.log10(255**2 / (100 / 3)))  # one channel in three
    assert result.psnr_y == pytest.approx(10 * math.log10(255**2 / (10 * 65.481 / 255) ** 2))


def test_rounded_luma_is_the_default():
    needs_skimage()
    hr = np.full((16, 16, 3), (255, 0, 0), dtype=np.uint8)  # Y = 81.481, rounded 81
    sr = np.full((16, 16, 3), (0, 0, 255), dtype=np.uint8)  # Y = 40.966, rounded 41
    assert sr_metrics(sr, hr, 2).psnr_y == pytest.approx(10 * math.log10(255**2 / 40**2))
    assert sr_metrics(sr, hr, 2, round_y=False).psnr_y == pytest.approx(
        10 * math.log10(255**2 / (81.481 - 40.966) ** 2)
    )


def test_scale_pixels_are_shaved_at_every_border():
    needs_skimage()
    hr = random_image((30, 26, 3))
    sr = hr.copy()
    sr[:3] = sr[-3:] = sr[:, :3] = sr[:, -3:] = 0  # the frame that scale 3 shaves off
    shaved = sr_metrics(sr, hr, 3)
    assert shaved == SRMetrics(psnr_y=math.inf, ssim_y=1.0, psnr_rgb=math.inf)
    assert math.isfinite(sr_metrics(sr, hr, 2).psnr_y)  # a thinner frame leaves differences in
    sr[3, 3] = 0  # just inside the frame
    assert math.isfinite(sr_metrics(sr, hr, 3).psnr_rgb)


def test_ssim_of_identical_images_is_one_and_of_different_ones_less():
    needs_skimage()
    hr = random_image((24, 24, 3))
    assert sr_metrics(hr, hr, 2).ssim_y == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(hr.astype(int) + random_image((24, 24, 3), seed=1, high=20) - 10, 0, 255).astype(np.uint8)
    assert 0.9 < sr_metrics(noisy, hr, 2).ssim_y < 0.999


def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM, written out: 11x11 Gaussian window (sigma 1.5), 'valid' positions only,
    population statistics, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2."""
    k = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    window = np.outer(k, k) / np.outer(k, k).sum()

    def local_mean(x):
        patches = np.lib.stride_tricks.sliding_window_view(x, (11, 11))
        return np.einsum("ijkl,kl->ij", patches, window)

    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mu_a**2
    var_b = local_mean(b * b) - mu_b**2
    cov = local_mean(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_has_the_literature_settings():
    needs_skimage()
    rng = np.random.default_rng(2)
    a = rng.uniform(16, 235, size=(23, 19))
    b = np.clip(a + rng.normal(0, 12, size=a.shape), 16, 235)
    assert ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=1e-10)
    hr = random_image((29, 25, 3), seed=3)
    sr = np.clip(hr.astype(int) + rng.integers(-15, 16, size=hr.shape), 0, 255).astype(np.uint8)
    y_sr, y_hr = (np.floor(to_y(x[2:-2, 2:-2]) + 0.5) for x in (sr, hr))
    assert sr_metrics(sr, hr, 2).ssim_y == pytest.approx(reference_ssim(y_sr, y_hr), abs=1e-10)


def test_tensors_and_grey_images_are_accepted():
    needs_skimage()
    hr = random_image((20, 18, 3))
    sr = random_image((20, 18, 3), seed=1)
    assert sr_metrics(torch.from_numpy(sr), torch.from_numpy(hr), 2) == sr_metrics(sr, hr, 2)
    grey_metrics = sr_metrics(sr[:, :, 0], hr[:, :, 0], 2)
    assert grey_metrics.psnr_y == grey_metrics.psnr_rgb == psnr(sr[2:-2, 2:-2, 0], hr[2:-2, 2:-2, 0])


def test_to_uint8_rounds_halves_up_clamps_and_moves_channels_last():
    # in float64, 0.5 / 255 * 255 and 2.5 / 255 * 255 are exactly 0.5 and 2.5: halves round up
    image = torch.tensor(
        [[[0.5 / 255, 1.49 / 255, -0.2, 1.3]], [[1.0, 0.0, 2.5 / 255, 0.2]]], dtype=torch.float64
    )  # (2, 1, 4)
    expected = np.array([[[1, 255], [1, 0], [0, 3], [255, 51]]], dtype=np.uint8)
    assert np.array_equal(to_uint8(image), expected)
    assert to_uint8(image[0]).shape == (1, 4, 1)


def test_a_set_scores_the_mean_of_its_images():
    results = [SRMetrics(30.0, 0.8, 28.0), SRMetrics(32.0, 0.9, 29.0)]
    assert mean_metrics(results) == SRMetrics(31.0, pytest.approx(0.85), 28.5)


def test_without_scikit_image_ssim_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    with pytest.raises(
        UsageError, match=r"SSIM needs the Python package `skimage.metrics`.*cliquegen\[train\]"
    ):
        ssim(np.zeros((11, 11)), np.zeros((11, 11)))


def grey8(*shape):
    return np.zeros(shape, np.uint8)


@pytest.mark.parametrize(
    ("sr", "hr", "scale", "message"),
    [
        (np.zeros((20, 20, 3)), grey8(20, 20, 3), 2, "expected an 8-bit"),
        (grey8(20, 20, 3), grey8(20, 22, 3), 2, "is 20x20x3 but the ground truth is 20x22x3"),
        (grey8(20, 20, 4), grey8(20, 20, 4), 2, r"not shape \(20, 20, 4\)"),
        (grey8(20, 20, 3), grey8(20, 20, 3), -1, "scale must be a non-negative integer"),
        (grey8(20, 20, 3), grey8(20, 20, 3), 10, "nothing left after shaving 10"),
        (grey8(20, 20, 3), grey8(20, 20, 3), 5, "at least 11x11 pixels after shaving, not 10x10"),
        ([[0]], grey8(20, 20, 3), 2, "expected a numpy array or a tensor, not list"),
    ],
)
def test_bad_inputs_say_what_is_wrong(sr, hr, scale, message):
    if "11x11" in message:
        needs_skimage()
    with pytest.raises(UsageError, match=message):
        sr_metrics(sr, hr, scale)
