"""cliquegen.data.resize.imresize against MATLAB's bicubic imresize, worked out from its definition."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cliquegen.data.resize import bicubic_degrade, imresize, modcrop
from cliquegen.errors import UsageError


def axis_matrix(in_length: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """The (out, in) matrix imresize applies along the width: the images of the unit impulses."""
    impulses = torch.eye(in_length, dtype=torch.float64)[:, None, :]  # (in, 1, in): in images 1 x in
    return imresize(impulses, scale=(1, scale), antialias=antialias)[:, 0, :].T


# Keys' kernel (a = -0.5) at the distances the x2 cases need, in 128ths:
# k(0.25) = 111, k(0.75) = 29, k(1.25) = -9, k(1.75) = -3.


def test_enlarging_by_two_matches_the_weights_worked_out_by_hand():
    # out pixel x (1-based) samples u = x/2 + 1/4; its taps lie at floor(u - 2) .. +5; taps 0
    # and -1 read pixels 1 and 2 (symmetric padding), taps n+1 and n+2 read pixels n and n-1.
    # x=1, u=0.75: taps -1, 0, 1, 2 weigh -3, 29, 111, -9 -> pixel 1: 29 + 111, pixel 2: -3 - 9
    # x=2, u=1.25: taps 0, 1, 2, 3 weigh -9, 111, 29, -3 -> pixel 1: -9 + 111
    # x=3, u=1.75: taps 0, 1, 2, 3 weigh -3, 29, 111, -9 -> pixel 1: -3 + 29
    # x=4, u=2.25: taps 1, 2, 3, 4 weigh -9, 111, 29, -3 (all inside)
    top = [[140, -12, 0, 0], [102, 29, -3, 0], [26, 111, -9, 0], [-9, 111, 29, -3]]
    expected = torch.tensor(top + [row[::-1] for row in top[::-1]], dtype=torch.float64) / 128
    torch.testing.assert_close(axis_matrix(4, 2), expected, rtol=0, atol=1e-15)


def test_shrinking_by_two_matches_the_weights_worked_out_by_hand():
    # The kernel is stretched to k(x/2)/2, 8 pixels wide: weights -3, -9, 29, 111, 111, 29, -9, -3
    # (in 256ths) at distances 3.5 .. -3.5 from u = 2x - 1/2.
    # x=1, u=1.5: taps -2 .. 5; -2, -1, 0 read pixels 3, 2, 1:
    #   pixel 1: 29 + 111, pixel 2: -9 + 111, pixel 3: -3 + 29, pixel 4: -9, pixel 5: -3
    # x=2, u=3.5: taps 0 .. 7; tap 0 reads pixel 1: pixel 1: -3 - 9
    top = [[140, 102, 26, -9, -3, 0, 0, 0], [-12, 29, 111, 111, 29, -9, -3, 0]]
    expected = torch.tensor(top + [row[::-1] for row in top[::-1]], dtype=torch.float64) / 256
    torch.testing.assert_close(axis_matrix(8, 0.5), expected, rtol=0, atol=1e-15)


def test_without_antialiasing_shrinking_samples_the_unstretched_kernel():
    # x=1, u=1.5: taps 0, 1, 2, 3 at distances 1.5, 0.5, -0.5, -1.5: k = -1/16, 9/16, 9/16, -1/16
    expected_first = torch.tensor([-1 + 9, 9, -1, 0, 0, 0, 0, 0], dtype=torch.float64) / 16
    expected_second = torch.tensor([0, -1, 9, 9, -1, 0, 0, 0], dtype=torch.float64) / 16  # u = 3.5
    matrix = axis_matrix(8, 0.5, antialias=False)
    torch.testing.assert_close(matrix[0], expected_first, rtol=0, atol=1e-15)
    torch.testing.assert_close(matrix[1], expected_second, rtol=0, atol=1e-15)


def keys(x: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel in its general form."""
    t = abs(x)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t <= 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def reflect(j: int, n: int) -> int:
    """0-based pixel read by the 1-based tap j of an n-pixel axis (edge pixels repeated)."""
    while not 1 <= j <= n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j - 1


def reference_matrix(in_length: int, out_length: int, scale: float) -> torch.Tensor:
    """The definition, one output pixel at a time, summing every tap the kernel reaches."""
    stretch = min(scale, 1.0)  # antialiasing: k(stretch * d) * stretch when shrinking
    reach = 2 / stretch
    rows = []
    for x in range(1, out_length + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        row = [0.0] * in_length
        taps = range(math.floor(u - reach) - 1, math.ceil(u + reach) + 2)
        weights = [stretch * keys(stretch * (u - j)) for j in taps]
        total = sum(weights)
        for j, w in zip(taps, weights, strict=True):
            row[reflect(j, in_length)] += w / total
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@given(
    in_length=st.integers(1, 24),
    scale=st.sampled_from([0.25, 1 / 3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]),
)
def test_every_weight_follows_the_definition(in_length, scale):
    out_length = math.ceil(in_length * scale)
    torch.testing.assert_close(
        axis_matrix(in_length, scale), reference_matrix(in_length, out_length, scale), rtol=0, atol=1e-12
    )


def test_both_axes_and_every_plane_are_resized_alike():
    image = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    rows = reference_matrix(9, 5, 0.5)
    cols = reference_matrix(7, 4, 0.5)
    expected = torch.einsum("oh,bchw,pw->bcop", rows, image, cols)
    torch.testing.assert_close(imresize(image, 0.5), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(imresize(image[1], 0.5), expected[1], rtol=0, atol=1e-12)  # (C, H, W)
    torch.testing.assert_close(imresize(image[1, 2], 0.5), expected[1, 2], rtol=0, atol=1e-12)  # (H, W)


def test_a_scale_per_axis_and_an_output_size():
    image = torch.rand(1, 10, 6, dtype=torch.float64)
    expected = torch.einsum(
        "oh,chw,pw->cop", reference_matrix(10, 5, 0.5), image, reference_matrix(6, 18, 3.0)
    )
    torch.testing.assert_close(imresize(image, (0.5, 3)), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(imresize(image, size=(5, 18)), expected, rtol=0, atol=1e-12)


def test_inside_the_border_band_it_agrees_with_torchs_antialiased_bicubic():
    # torch's antialiased path has the same kernel, stretching and centres, but truncates the
    # kernel at the borders instead of mirroring: only the outer pixels may differ.
    image = torch.rand(1, 2, 48, 36, dtype=torch.float64)
    for scale, band in ((0.5, 2), (0.25, 2), (1 / 3, 2), (2, 3), (3, 4), (4, 6)):
        ours = imresize(image, scale)
        theirs = F.interpolate(image, size=ours.shape[-2:], mode="bicubic", antialias=True)
        inner = (slice(None), slice(None), slice(band, -band), slice(band, -band))
        torch.testing.assert_close(ours[inner], theirs[inner], rtol=0, atol=1e-12)
        assert (ours - theirs).abs().max() > 1e-4  # the borders do differ


def test_scale_one_is_the_identity():
    image = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    assert torch.equal(imresize(image, 1), image)
    assert torch.equal(imresize(image, size=(7, 5)), image)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2, 3, 4])
def test_a_constant_image_stays_constant(scale):
    image = torch.full((1, 3, 13, 11), 0.3, dtype=torch.float64)
    out = imresize(image, scale)
    torch.testing.assert_close(out, torch.full_like(out, 0.3), rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((7, 5), 0.5, (4, 3)),  # ceil(3.5), ceil(2.5)
        ((7, 5), 1 / 3, (3, 2)),
        ((7, 5), 0.25, (2, 2)),
        ((7, 5), 1.5, (11, 8)),  # ceil(10.5), ceil(7.5)
        ((7, 5), 2, (14, 10)),
        ((1, 1), 0.25, (1, 1)),
        ((1, 1), 3, (3, 3)),
    ],
)
def test_output_size_rounds_up_as_matlab_does(size, scale, expected):
    assert imresize(torch.rand(2, *size), scale).shape == (2, *expected)


def test_bicubic_degrade_is_imresize_by_the_reciprocal():
    hr = torch.rand(3, 12, 9, dtype=torch.float64)
    torch.testing.assert_close(bicubic_degrade(hr, 3), imresize(hr, 1 / 3), rtol=0, atol=0)
    assert bicubic_degrade(hr, 3).shape == (3, 4, 3)
    assert bicubic_degrade(torch.rand(3, 13, 10), 4).shape == (3, 4, 3)  # not mod-cropped: rounded up


def test_modcrop_keeps_the_top_left_multiple_of_the_scale():
    image = torch.arange(2 * 7 * 10).reshape(2, 7, 10)
    assert torch.equal(modcrop(image, 3), image[:, :6, :9])
    assert torch.equal(modcrop(image, 1), image)
    assert modcrop(image, 4).shape == (2, 4, 8)


def test_dtype_and_device_are_kept_and_float32_is_close():
    image = torch.rand(1, 3, 20, 16, dtype=torch.float64)
    out32 = imresize(image.float(), 0.5)
    assert out32.dtype == torch.float32 and out32.device == image.device
    torch.testing.assert_close(out32.double(), imresize(image, 0.5), rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_it_matches_the_cpu():
    image = torch.rand(2, 3, 30, 22, dtype=torch.float64)
    for scale in (0.25, 1 / 3, 2, 3):
        out = imresize(image.cuda(), scale)
        assert out.is_cuda
        torch.testing.assert_close(out.cpu(), imresize(image, scale), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: imresize(x), "give either scale or size"),
        (lambda x: imresize(x, 2, size=(4, 4)), "give either scale or size"),
        (lambda x: imresize(x, 0), "scale must be positive and finite"),
        (lambda x: imresize(x, -2), "scale must be positive and finite"),
        (lambda x: imresize(x, float("nan")), "scale must be positive and finite"),
        (lambda x: imresize(x, (1, 2, 3)), "scale must be one number or a (height, width) pair"),
        (lambda x: imresize(x, size=(4, 0)), "size must be positive and finite"),
        (lambda x: imresize(x, size=(4, 2.5)), "size must be whole numbers"),
        (lambda x: imresize(x.to(torch.uint8), 2), "expected a floating-point tensor"),
        (lambda x: imresize(x[0, 0], 2), "last two dimensions"),
        (lambda x: imresize(x[:0], 2), "cannot resize an empty 0x4 image"),
        (lambda x: modcrop(x, 0), "modcrop: scale must be a positive integer"),
        (lambda x: modcrop(x, 2.0), "modcrop: scale must be a positive integer"),
        (lambda x: bicubic_degrade(x, (2, 2)), "bicubic_degrade: scale must be one number"),
    ],
)
def test_bad_requests_say_what_is_wrong(call, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(torch.rand(4, 4))
