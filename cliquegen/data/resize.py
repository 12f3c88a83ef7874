"""Bicubic resizing as MATLAB's ``imresize`` does it, for torch tensors.

Super-resolution benchmarks make their low-resolution inputs with MATLAB's ``imresize(HR, 1/s,
'bicubic')`` and report the bicubic upscaling of those inputs as their baseline, so a model's
numbers only sit beside the published ones when its data is degraded the same way.  The
definition reproduced here, per axis:

- the cubic convolution kernel with a = -0.5 (Keys 1981), support [-2, 2];
- output size ``ceil(scale * input size)``; output pixel ``x`` (1-based) samples the input at
  ``u = x / scale + (1 - 1 / scale) / 2``, so pixel edges line up (0.5 maps to 0.5);
- when shrinking (scale < 1) the kernel is stretched by ``1 / scale`` and scaled by ``scale``,
  which low-pass filters the image before sampling (antialiasing); its support is ``4 / scale``
  pixels wide;
- the taps of output pixel ``x`` are the ``ceil(width) + 2`` input pixels from
  ``floor(u - width / 2)`` on; their weights are normalised to sum to 1, and taps outside the
  image are mirrored back into it with the edge pixel repeated (index 0 reads pixel 1, -1 reads
  pixel 2, ``n + 1`` reads pixel ``n``: "symmetric" padding).

Each axis becomes a dense ``(out, in)`` weight matrix (computed once in float64 and cached), and
the image is resized by two matrix products, first along the axis with the smaller scale as
MATLAB orders them.  Products run in the input's dtype and device; give float64 where the last
bits matter (evaluation).  Unlike MATLAB on ``uint8`` images, nothing is rounded between the two
passes: inputs are float, and the caller quantises the result when it wants 8 bits.

How it differs from the other bicubic resizes (measured in float64 on a 240x240 crop of a
photograph and on uniform random images in [0, 1], shrinking and enlarging by 2, 3 and 4; pixel
values in the [0, 1] range):

- ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)`` uses the same kernel
  (a = -0.5 on its antialiasing path), the same stretching when shrinking and the same pixel
  centres, so it agrees with this module to 1e-12 everywhere but a band along the borders: the
  outer 2 output pixels when shrinking, the outer 3, 4 and 6 when enlarging by 2, 3 and 4.
  There it drops the taps that fall outside the image and renormalises the others instead of
  mirroring them; those pixels differ by up to 0.06 (shrinking) and 0.02 (enlarging).  It also
  sizes its output ``floor(scale * size)`` where MATLAB rounds up.
- ``interpolate(mode="bicubic")`` without ``antialias`` uses a = -0.75, never widens the kernel
  (so it aliases when shrinking) and replicates the edge pixel: it differs everywhere, by up to
  0.45 on the photograph when shrinking by 4 (mean 0.05) and 0.07 when enlarging.
- PIL's ``Image.resize(..., Image.BICUBIC)`` computes what torch's antialiased path does (in
  mode ``F`` the two agree to float32 rounding), with the same border rule.  On 8-bit images it
  uses fixed-point weights and rounds and clips to 8 bits after the horizontal pass and again
  after the vertical one: against this module's result rounded once, 10-23% of the pixels
  differ, interior ones by 1 level (more where the first pass clipped an overshoot), border
  ones by up to 15 levels.

On the standard test sets (Set5 and Set14, x2 to x4), once ``scale`` pixels are shaved at every
border as the benchmarks' PSNR does, torch's antialiased resize gives the same mean bicubic
baseline as this module to 0.002 dB; PIL's 8-bit resize is up to 0.02 dB lower, and torch
without antialiasing misses the published rows by up to 1.1 dB.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np
import torch

from ..errors import UsageError

#: Width of the cubic kernel's support, in input pixels, when it is not stretched.
KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5: 1 at 0, 0 at every other integer, 0 beyond 2."""
    t = np.abs(x)
    near = (1.5 * t - 2.5) * t * t + 1.0  # |x| <= 1
    far = ((-0.5 * t + 2.5) * t - 4.0) * t + 2.0  # 1 < |x| <= 2
    return np.where(t <= 1.0, near, np.where(t <= 2.0, far, 0.0))


@lru_cache(maxsize=32)
def _weights(in_length: int, out_length: int, scale: float, antialias: bool) -> torch.Tensor:
    """The ``(out_length, in_length)`` float64 matrix that resizes one axis (its rows sum to 1)."""
    if scale < 1.0 and antialias:
        width = KERNEL_WIDTH / scale

        def kernel(d):
            return scale * cubic(scale * d)
    else:
        width = KERNEL_WIDTH
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)  # 1-based output pixels
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # where each samples the input, 1-based
    left = np.floor(u - width / 2.0)
    taps = left[:, None] + np.arange(math.ceil(width) + 2)  # (out, taps), 1-based, may be outside
    w = kernel(u[:, None] - taps)
    w /= w.sum(axis=1, keepdims=True)
    # mirror out-of-range taps: the index sequence 1..n, n..1 repeats with period 2n
    k = np.mod(taps.astype(np.int64) - 1, 2 * in_length)
    k = np.where(k < in_length, k, 2 * in_length - 1 - k)  # 0-based, inside the image
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.broadcast_to(np.arange(out_length)[:, None], k.shape), k), w)
    return torch.from_numpy(matrix)


@lru_cache(maxsize=32)
def _weights_on(
    in_length: int, out_length: int, scale: float, antialias: bool, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """:func:`_weights` in the dtype and on the device of the image it resizes."""
    return _weights(in_length, out_length, scale, antialias).to(device=device, dtype=dtype)


def _pair(value, what: str) -> tuple[float, float]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise UsageError(f"{what} must be one number or a (height, width) pair, not {value!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise UsageError(f"{what} must be positive and finite, not {value!r}")
    return values


def imresize(
    img: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize the last two dimensions (H, W) of a float tensor as MATLAB's ``imresize`` bicubic.

    ``img``: (H, W), (C, H, W), (B, C, H, W) or any leading dimensions, float, any device.
    Give either ``scale`` (one factor or a (height, width) pair; the output is
    ``ceil(scale * H) x ceil(scale * W)``) or ``size`` (the output (height, width); the scale of
    each axis is then output / input).  ``antialias=False`` keeps the unstretched kernel when
    shrinking (MATLAB's ``'Antialiasing', false``).  The result has ``img``'s dtype and device.
    """
    if not isinstance(img, torch.Tensor) or img.dim() < 2:
        raise UsageError("imresize: expected a tensor whose last two dimensions are height and width")
    if not img.is_floating_point():
        raise UsageError(f"imresize: expected a floating-point tensor, not {img.dtype}")
    height, width = img.shape[-2:]
    if height == 0 or width == 0:
        raise UsageError(f"imresize: cannot resize an empty {height}x{width} image")
    if (scale is None) == (size is None):
        raise UsageError("imresize: give either scale or size")
    if size is not None:
        out_h, out_w = _pair(size, "imresize: size")
        if out_h != int(out_h) or out_w != int(out_w):
            raise UsageError(f"imresize: size must be whole numbers of pixels, not {size!r}")
        out_h, out_w = int(out_h), int(out_w)
        scale_h, scale_w = out_h / height, out_w / width
    else:
        scale_h, scale_w = (float(s) for s in _pair(scale, "imresize: scale"))
        out_h, out_w = math.ceil(scale_h * height), math.ceil(scale_w * width)
    w_h = _weights_on(height, out_h, scale_h, bool(antialias), img.device, img.dtype)
    w_w = _weights_on(width, out_w, scale_w, bool(antialias), img.device, img.dtype)
    if scale_h <= scale_w:  # MATLAB resizes the axis with the smaller scale first
        return torch.matmul(torch.matmul(w_h, img), w_w.T)
    return torch.matmul(w_h, torch.matmul(img, w_w.T))


def modcrop(img, scale: int):
    """The top-left part of ``img`` (..., H, W) whose height and width are multiples of ``scale``."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise UsageError(f"modcrop: scale must be a positive integer, not {scale!r}")
    height, width = img.shape[-2:]
    return img[..., : height - height % scale, : width - width % scale]


def bicubic_degrade(hr: torch.Tensor, scale: float) -> torch.Tensor:
    """The low-resolution input of super-resolution benchmarks: ``hr`` shrunk by ``scale`` with
    :func:`imresize` (antialiased bicubic).  Mod-crop ``hr`` first (:func:`modcrop`) for an exact
    ``H / scale x W / scale`` result; otherwise the size is rounded up as MATLAB does."""
    if isinstance(scale, (tuple, list)):
        raise UsageError(f"bicubic_degrade: scale must be one number, not {scale!r}")
    factor, _ = _pair(scale, "bicubic_degrade: scale")
    return imresize(hr, 1.0 / float(factor))
