"""PSNR and SSIM of super-resolved images as the super-resolution literature computes them.

Published tables (SRCNN's evaluation protocol, kept by VDSR, EDSR, RCAN and later work) compare
8-bit images on their luma alone, with a frame of ``scale`` pixels shaved off, so this module:

- takes both images as 8-bit (H, W, C) arrays (quantise float outputs with :func:`to_uint8`);
- converts RGB to the Y of ITU-R BT.601 studio swing, ``Y = 16 + (65.481 R + 128.553 G +
  24.966 B)`` with R, G, B in [0, 1] (Y in [16, 235]), rounded to an integer as MATLAB's
  ``rgb2ycbcr`` does for 8-bit images (``round_y=False`` keeps the fraction, as the Python
  evaluation code of some later papers does); a one-channel image is its own Y;
- shaves ``scale`` pixels at every border (the border pixels depend on how the resize padded);
- PSNR = ``10 log10(255^2 / MSE)`` on Y, and on all channels of the 8-bit images ("RGB");
- SSIM on Y with Wang et al.'s settings: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01,
  K2 = 0.03, dynamic range 255, population (not sample) covariances, averaged over the window
  positions that lie wholly inside the image.  It is computed by scikit-image's
  ``structural_similarity`` (an optional dependency).

A set's score is the mean of its images' scores (:func:`mean_metrics`), not the PSNR of the mean
squared error.

With the bicubic baseline made by :func:`cliquegen.data.resize.imresize` on RGB (shrink the
mod-cropped image, enlarge it back, round to 8 bits), these scores are within 0.01 dB and 0.0003
SSIM of the published bicubic rows of Set5 and Set14 at x2, x3 and x4; unrounded Y scores the
same images up to 0.03 dB and 0.001 SSIM higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError, import_extra

#: BT.601 luma from RGB in [0, 255]: offset and weights (the [0, 1] weights divided by 255).
Y_OFFSET = 16.0
Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
PEAK = 255.0
#: SSIM settings of Wang et al. (2004), kept by the super-resolution literature.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # the Gaussian window, truncated at 3.5 sigma: 11x11


@dataclass(frozen=True)
class SRMetrics:
    """Scores of one super-resolved image against its ground truth (dB, dB, 0..1)."""

    psnr_y: float
    ssim_y: float
    psnr_rgb: float


def _as_uint8_hwc(img, name: str) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    if not isinstance(img, np.ndarray):
        raise UsageError(f"{name}: expected a numpy array or a tensor, not {type(img).__name__}")
    if img.dtype != np.uint8:
        raise UsageError(f"{name}: expected an 8-bit (uint8) image, not {img.dtype}; quantise it first")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise UsageError(f"{name}: expected an (H, W), (H, W, 1) or (H, W, 3) image, not shape {img.shape}")
    return img


def to_y(img) -> np.ndarray:
    """The BT.601 luma (float64, in [16, 235]) of an 8-bit (H, W, 3) RGB image; a grey (H, W) or
    (H, W, 1) image is returned as float64 unchanged."""
    img = _as_uint8_hwc(img, "to_y")
    if img.shape[2] == 1:
        return img[:, :, 0].astype(np.float64)
    return Y_OFFSET + img.astype(np.float64) @ Y_WEIGHTS


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """An image tensor with values in [0, 1], (C, H, W) or (H, W), as an 8-bit (H, W, C) array:
    clamped, times 255, rounded half away from zero (as MATLAB's ``uint8`` does)."""
    if img.dim() == 2:
        img = img[None]
    if img.dim() != 3:
        raise UsageError(f"to_uint8: expected a (C, H, W) or (H, W) tensor, not shape {tuple(img.shape)}")
    levels = torch.floor(img.detach().double().clamp(0.0, 1.0) * PEAK + 0.5)
    return levels.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def psnr(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB of two arrays of equal shape (inf when they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two single-channel float images on the [0, 255] scale, with the literature's
    settings (see the module docstring); both sides must be at least 11 pixels."""
    metrics = import_extra("skimage.metrics", "train", "SSIM")
    if min(a.shape) < SSIM_WINDOW:
        raise UsageError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after shaving, "
            f"not {a.shape[0]}x{a.shape[1]}"
        )
    return float(
        metrics.structural_similarity(
            a.astype(np.float64),
            b.astype(np.float64),
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            data_range=PEAK,
            K1=0.01,
            K2=0.03,
        )
    )


def shave(img: np.ndarray, pixels: int) -> np.ndarray:
    """``img`` (H, W, ...) without ``pixels`` rows and columns at each border."""
    return img[pixels : img.shape[0] - pixels, pixels : img.shape[1] - pixels] if pixels else img


def sr_metrics(sr, hr, scale: int, *, round_y: bool = True) -> SRMetrics:
    """PSNR and SSIM on Y and PSNR on RGB of a super-resolved image against its ground truth.

    ``sr`` and ``hr``: 8-bit (H, W, 3) RGB or (H, W) / (H, W, 1) grey images of the same shape,
    numpy arrays or tensors; ``scale``: the upscaling factor, also the number of pixels shaved at
    every border; ``round_y``: round Y to integers (see the module docstring).
    """
    sr = _as_uint8_hwc(sr, "sr_metrics (sr)")
    hr = _as_uint8_hwc(hr, "sr_metrics (hr)")
    if sr.shape != hr.shape:
        raise UsageError(
            f"sr_metrics: the super-resolved image is {sr.shape[0]}x{sr.shape[1]}x{sr.shape[2]} "
            f"but the ground truth is {hr.shape[0]}x{hr.shape[1]}x{hr.shape[2]}"
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 0:
        raise UsageError(f"sr_metrics: scale must be a non-negative integer, not {scale!r}")
    if min(hr.shape[:2]) - 2 * scale < 1:
        raise UsageError(
            f"sr_metrics: a {hr.shape[0]}x{hr.shape[1]} image has nothing left after shaving {scale} "
            "pixels at every border"
        )
    sr, hr = shave(sr, scale), shave(hr, scale)
    y_sr, y_hr = to_y(sr), to_y(hr)
    if round_y:  # Y >= 0: adding 0.5 and flooring rounds halves up, as MATLAB does
        y_sr, y_hr = np.floor(y_sr + 0.5), np.floor(y_hr + 0.5)
    return SRMetrics(psnr_y=psnr(y_sr, y_hr), ssim_y=ssim(y_sr, y_hr), psnr_rgb=psnr(sr, hr))


def mean_metrics(results: list[SRMetrics]) -> SRMetrics:
    """The per-image scores averaged over a set, as published tables report them."""
    if not results:
        raise UsageError("mean_metrics: no images to average")
    return SRMetrics(
        psnr_y=float(np.mean([r.psnr_y for r in results])),
        ssim_y=float(np.mean([r.ssim_y for r in results])),
        psnr_rgb=float(np.mean([r.psnr_rgb for r in results])),
    )
