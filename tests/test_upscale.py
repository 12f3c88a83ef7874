"""cliquegen.train.upscale: tiles give the whole-image result; images of every mode come back
8-bit, enlarged, upright, in their own mode."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cliquegen.data.resize import imresize
from cliquegen.errors import UsageError
from cliquegen.train.sr_metrics import to_uint8
from cliquegen.train.upscale import Bicubic, save_image, upscale, upscale_tensor

Image = pytest.importorskip("PIL.Image")


class TinySR(nn.Module):
    """Three 3x3 convolutions in LR space, then a pixel shuffle: the output at an LR position
    depends on inputs at most 3 pixels away (the receptive field's radius)."""

    radius = 3

    def __init__(self, channels=3, scale=2, dtype=torch.float64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.PReLU(8),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        ).to(dtype)
        self.scale = scale
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        # a residual over nearest-neighbour enlargement keeps outputs near the input's range
        return self.body(x) * 0.1 + x.repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2)


def rgb(height, width, seed=0, channels=3):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize(("tile", "height", "width"), [(4, 13, 11), (5, 13, 11), (1, 6, 7), (16, 13, 11)])
def test_tiles_give_the_whole_image_result(tile, height, width):
    model = TinySR()
    image = torch.rand(3, height, width, dtype=torch.float64)
    whole = upscale_tensor(model, image, 2)
    tiled = upscale_tensor(model, image, 2, tile=tile, overlap=TinySR.radius)
    assert whole.shape == tiled.shape == (3, 2 * height, 2 * width)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-12)


def test_too_little_overlap_shows_at_the_tile_seams():
    model = TinySR()
    image = torch.rand(3, 12, 12, dtype=torch.float64)
    whole = upscale_tensor(model, image, 2)
    assert (upscale_tensor(model, image, 2, tile=4, overlap=TinySR.radius - 1) - whole).abs().max() > 1e-4


def test_the_model_never_sees_more_than_a_tile_and_its_context():
    model = TinySR()
    image = torch.rand(3, 40, 30, dtype=torch.float64)
    upscale_tensor(model, image, 2, tile=8, overlap=3)
    assert len(model.seen) == 5 * 4
    assert max(shape[2] for shape in model.seen) == max(shape[3] for shape in model.seen) == 8 + 2 * 3


def test_progress_is_reported_per_tile():
    calls = []
    upscale_tensor(
        TinySR(), torch.rand(3, 10, 7, dtype=torch.float64), 2, tile=4, on_tile=lambda *a: calls.append(a)
    )
    assert calls == [(k, 6) for k in range(1, 7)]  # 3 rows x 2 columns


class EvenOnly(nn.Module):
    """A x2 model that takes only even sides (as wavelet models do)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(12, 48, 3, padding=1).double()

    def forward(self, x):
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise AssertionError(f"odd input {tuple(x.shape)}")
        return nn.functional.pixel_shuffle(self.conv(nn.functional.pixel_unshuffle(x, 2)), 4)


def test_models_that_need_even_sides_get_padded_tiles():
    image = torch.rand(3, 13, 11, dtype=torch.float64)
    whole = upscale_tensor(EvenOnly(), image, 2, multiple=2)
    assert whole.shape == (3, 26, 22)
    padded = torch.nn.functional.pad(image[None], (0, 1, 0, 1), mode="replicate")[0]
    torch.testing.assert_close(whole, upscale_tensor(EvenOnly(), padded, 2, multiple=2)[:, :26, :22])
    tiled = upscale_tensor(EvenOnly(), image, 2, tile=3, overlap=3, multiple=2)  # rounded up to 4
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-12)


def test_the_model_is_run_in_eval_mode_and_left_as_it_was():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Upsample(scale_factor=2)).double()
    model[0].running_mean.fill_(0.5)
    model.train()
    image = torch.rand(3, 6, 6, dtype=torch.float64)
    out = upscale_tensor(model, image, 2)
    expected = (image - 0.5) / math.sqrt(1 + 1e-5)
    torch.testing.assert_close(out, expected.repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert model.training and not out.requires_grad


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (nn.Identity(), r"turns a 6x6 image into a 1x3x6x6 tensor, not 12x12 images: it is not a x2"),
        (nn.Sequential(nn.Flatten(), nn.Linear(108, 10)), "into a 1x10 tensor"),
        (nn.Upsample(scale_factor=3), "into a 1x3x18x18 tensor, not 12x12"),
    ],
)
def test_a_model_that_is_not_x_scale_super_resolution_is_refused(model, message):
    with pytest.raises(UsageError, match=message):
        upscale_tensor(model, torch.rand(3, 6, 6), 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile": 0}, "the tile size must be an integer of at least 1"),
        ({"overlap": -1}, "the overlap must be an integer of at least 0"),
        ({"multiple": 0}, "the size multiple must be an integer of at least 1"),
        ({"scale": 1.5}, "the scale must be an integer"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        upscale_tensor(TinySR(), torch.rand(3, 6, 6, dtype=torch.float64), **{"scale": 2, **options})


# --- images --------------------------------------------------------------------------------------


def test_an_rgb_image_tiled_equals_its_whole_pass_after_8_bits():
    image = Image.fromarray(rgb(21, 17))
    model = TinySR()
    whole = upscale(model, image, 2)
    assert whole.mode == "RGB" and whole.size == (34, 42)
    planes = torch.from_numpy(rgb(21, 17)).permute(2, 0, 1).double() / 255
    assert np.array_equal(np.asarray(whole), to_uint8(upscale_tensor(model, planes, 2).double()))
    assert np.array_equal(np.asarray(upscale(model, image, 2, tile=6, overlap=3)), np.asarray(whole))


def test_bicubic_through_the_tiler_is_bicubic():
    array = rgb(30, 26)
    out = upscale(Bicubic(3), Image.fromarray(array), 3, tile=7, overlap=3)
    planes = torch.from_numpy(array).permute(2, 0, 1).double() / 255
    expected = to_uint8(imresize(planes, 3.0))
    assert np.abs(np.asarray(out).astype(int) - expected).max() <= 1  # float32 against float64
    assert (np.asarray(out) != expected).mean() < 0.001


def test_a_grey_image_through_an_rgb_model_comes_back_grey():
    grey = rgb(12, 10, channels=1)
    out = upscale(TinySR(), Image.fromarray(grey), 2, tile=5, overlap=3)
    assert out.mode == "L" and out.size == (20, 24)
    as_rgb = upscale(TinySR(), Image.fromarray(np.dstack([grey] * 3)), 2)
    assert np.array_equal(np.asarray(out), np.asarray(as_rgb.convert("L")))


def test_an_rgb_image_through_a_grey_model_keeps_its_colours():
    array = rgb(12, 10)
    model = TinySR(channels=1)
    out = upscale(model, Image.fromarray(array), 2, channels=1)
    assert out.mode == "RGB" and out.size == (20, 24)
    ycbcr = np.asarray(Image.fromarray(array).convert("YCbCr"))
    planes = torch.from_numpy(ycbcr.copy()).permute(2, 0, 1).float() / 255
    y = to_uint8(upscale_tensor(model, planes[:1].double(), 2))[:, :, 0]
    chroma = to_uint8(imresize(planes[1:], 2.0))
    expected = Image.merge("YCbCr", [Image.fromarray(y), *(Image.fromarray(chroma[:, :, k]) for k in (0, 1))])
    assert np.array_equal(np.asarray(out), np.asarray(expected.convert("RGB")))
    grey = upscale(model, Image.fromarray(array[:, :, 0]), 2, channels=1)
    assert grey.mode == "L"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_enlarged_by_bicubic(mode):
    channels = 4 if mode == "RGBA" else 2
    array = rgb(11, 9, channels=channels)
    out = upscale(TinySR(), Image.fromarray(array, mode), 2, tile=4, overlap=3)
    assert out.mode == mode and out.size == (18, 22)
    alpha = torch.from_numpy(array[:, :, -1].copy())[None].float() / 255
    expected = to_uint8(imresize(alpha, 2.0))[:, :, 0]
    assert np.abs(np.asarray(out)[:, :, -1].astype(int) - expected).max() <= 1


def test_palette_images_come_back_in_colour():
    image = Image.fromarray(rgb(8, 8)).quantize(8)
    assert upscale(TinySR(), image, 2).mode == "RGB"


def test_exif_orientation_is_respected(tmp_path):
    array = rgb(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 8  # shown turned 90 degrees anticlockwise
    Image.fromarray(array).save(tmp_path / "turned.png", exif=exif)
    out = upscale(TinySR(), tmp_path / "turned.png", 2)
    assert out.size == (12, 20)
    upright = Image.fromarray(np.ascontiguousarray(np.rot90(array)))
    assert np.array_equal(np.asarray(out), np.asarray(upscale(TinySR(), upright, 2)))


def test_a_model_of_the_wrong_channel_count_is_refused():
    to_grey = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Upsample(scale_factor=2))
    with pytest.raises(UsageError, match="the model gives 1-channel images, not 3-channel ones"):
        upscale(to_grey, Image.fromarray(rgb(6, 6)), 2)
    with pytest.raises(UsageError, match="1 or 3 channels, not 4"):
        upscale(TinySR(), Image.fromarray(rgb(6, 6)), 2, channels=4)


def test_bad_image_files_say_so(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UsageError, match="bad.png: cannot read the image"):
        upscale(TinySR(), tmp_path / "bad.png", 2)


def test_images_are_saved_in_the_format_their_suffix_names(tmp_path):
    image = upscale(TinySR(), Image.fromarray(rgb(8, 8)), 2)
    assert save_image(image, tmp_path / "a.png") == tmp_path / "a.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(image))
    save_image(image, tmp_path / "b.JPG")
    with Image.open(tmp_path / "b.JPG") as saved:
        assert saved.format == "JPEG" and saved.size == (16, 16)
    with pytest.raises(UsageError, match="cannot tell the image format from the suffix '.xyz'"):
        save_image(image, tmp_path / "c.xyz")
