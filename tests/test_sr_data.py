"""cliquegen.data.sr: training patches and validation images for super-resolution."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cliquegen.data import samples, sr
from cliquegen.data.resize import bicubic_degrade, modcrop
from cliquegen.data.sr import (
    SRImages,
    SRPatches,
    augment_pair,
    degrade_crop,
    image_size,
    read_pixels,
    split_folder,
    sr_folder_data,
)
from cliquegen.errors import UsageError

Image = pytest.importorskip("PIL.Image")


def pixels(height, width, channels=3, seed=0):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.reshape(*array.shape[:2], -1)).permute(2, 0, 1)


def folder(tmp_path, count, height=20, width=24):
    return [save(tmp_path / f"img{k:02d}.png", pixels(height, width, seed=k)) for k in range(count)]


# --- which images train and which validate ------------------------------------------------------


def test_a_flat_folder_holds_out_every_fifth_image(tmp_path):
    files = folder(tmp_path, 11)
    train, test = split_folder(tmp_path)
    assert test == [files[4], files[9]]
    assert train == [f for f in files if f not in test]


def test_a_folder_of_fewer_than_five_images_holds_out_the_last(tmp_path):
    files = folder(tmp_path, 3)
    assert split_folder(tmp_path) == (files[:2], files[2:])


def test_train_and_val_folders_are_used_as_they_are(tmp_path):
    train = [save(tmp_path / "train" / f"{k}.jpg", pixels(16, 16, seed=k)) for k in range(2)]
    val = [save(tmp_path / "val" / "deeper" / "v.png", pixels(16, 16))]
    save(tmp_path / "train" / ".hidden.png", pixels(16, 16))
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    assert split_folder(tmp_path) == (train, val)


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_images_are_refused(tmp_path, count):
    folder(tmp_path, count)
    with pytest.raises(UsageError, match="needs at least 2 .* images.*found"):
        split_folder(tmp_path)


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        split_folder(tmp_path / "nowhere")


# --- the LR patch is the crop of the whole image's LR image -------------------------------------


@pytest.mark.parametrize(("scale", "height", "width"), [(2, 21, 18), (3, 20, 25), (4, 24, 17)])
def test_every_lr_patch_is_the_crop_of_the_whole_images_lr(scale, height, width):
    image = torch.from_numpy(pixels(height, width)).permute(2, 0, 1)
    whole_hr = modcrop(image, scale).double() / 255
    whole_lr = bicubic_degrade(whole_hr, scale)
    size = 3
    for top in range(height // scale - size + 1):  # near the borders and in the middle
        for left in range(width // scale - size + 1):
            lr, hr = degrade_crop(image, scale, top, left, size)
            assert lr.shape == (3, size, size) and hr.shape == (3, size * scale, size * scale)
            assert lr.dtype == hr.dtype == torch.float32
            h0, w0 = top * scale, left * scale
            assert torch.equal(
                hr.double(), whole_hr[:, h0 : h0 + size * scale, w0 : w0 + size * scale].float().double()
            )
            expected = whole_lr[:, top : top + size, left : left + size]
            torch.testing.assert_close(lr.double(), expected, rtol=0, atol=2e-6)


def test_without_the_margin_the_patch_borders_would_differ(monkeypatch):
    # the margin is what makes the crop exact: a patch degraded on its own mirrors its borders
    image = torch.from_numpy(pixels(24, 24)).permute(2, 0, 1)
    whole_lr = bicubic_degrade(image.double() / 255, 2)
    monkeypatch.setattr(sr, "DEGRADE_MARGIN", 0)
    lr, _ = degrade_crop(image, 2, 4, 4, 3)
    assert (lr.double() - whole_lr[:, 4:7, 4:7]).abs().max() > 1e-3


@pytest.mark.parametrize("which", range(8))
def test_each_orientation_keeps_a_valid_pair(which):
    hr = torch.rand(3, 12, 12, dtype=torch.float64)
    lr, hr2 = augment_pair(bicubic_degrade(hr, 3), hr, which)
    torch.testing.assert_close(lr, bicubic_degrade(hr2, 3), rtol=0, atol=1e-12)


def test_the_eight_orientations_are_the_flips_and_rotations():
    hr = torch.arange(9.0).reshape(1, 3, 3)
    seen = {tuple(augment_pair(hr, hr, k)[1].flatten().tolist()) for k in range(8)}
    expected = set()
    for turned in (hr, hr.transpose(-1, -2)):
        for k in range(4):
            expected.add(tuple(torch.rot90(turned, k, dims=(1, 2)).flatten().tolist()))
    assert seen == expected and len(seen) == 8


# --- training patches ---------------------------------------------------------------------------


def find_patch(image: torch.Tensor, hr: torch.Tensor, scale: int):
    """The LR-grid position of an HR patch in the image, or None."""
    size = hr.shape[-1]
    for top in range(0, image.shape[1] - size + 1, scale):
        for left in range(0, image.shape[2] - size + 1, scale):
            if torch.equal(image[:, top : top + size, left : left + size].float() / 255, hr):
                return top // scale, left // scale
    return None


def test_patches_are_random_grid_aligned_crops_with_their_lr(tmp_path):
    files = folder(tmp_path, 2, height=26, width=30)
    patches = SRPatches(files, 2, 8, patches_per_image=5, augment=False)
    assert len(patches) == 10
    torch.manual_seed(0)
    places = set()
    for index in range(len(patches)):
        lr, hr = patches[index]
        assert lr.shape == (3, 4, 4) and hr.shape == (3, 8, 8)
        image = read_pixels(files[index // 5], 3)
        where = find_patch(image, hr, 2)
        assert where is not None
        places.add((index // 5, where))
        expected, _ = degrade_crop(image, 2, *where, 4)
        assert torch.equal(lr, expected)
    assert len(places) > 2  # random places


def test_augmented_patches_come_in_several_orientations(tmp_path):
    files = folder(tmp_path, 1, height=8, width=8)  # the patch is the whole image
    patches = SRPatches(files, 2, 8, patches_per_image=40)
    torch.manual_seed(0)
    image = read_pixels(files[0], 3).float() / 255
    seen = {tuple(patches[k][1].flatten().tolist()) for k in range(40)}
    allowed = {tuple(augment_pair(image, image, k)[1].flatten().tolist()) for k in range(8)}
    assert seen <= allowed and len(seen) >= 6


def test_grey_training_images_and_grey_models(tmp_path):
    files = [save(tmp_path / "a.png", pixels(16, 16, 1)), save(tmp_path / "b.png", pixels(16, 16))]
    lr, hr = SRPatches(files, 4, 8, channels=1)[0]
    assert lr.shape == (1, 2, 2) and hr.shape == (1, 8, 8)
    lr, hr = SRPatches(files, 4, 8, channels=3)[0]  # grey read as RGB: three equal channels
    assert torch.equal(hr[0], hr[1]) and torch.equal(hr[1], hr[2])


def test_patch_size_must_fit_every_image_and_the_scale(tmp_path):
    files = folder(tmp_path, 2, height=20, width=30)
    with pytest.raises(UsageError, match=r"img00.png: the image is 20x30, smaller than the 24x24"):
        SRPatches(files, 2, 24)
    with pytest.raises(
        UsageError, match=r"patch size \(10 HR pixels\) must be a multiple of the scale \(4\), e.g. 8"
    ):
        SRPatches(files, 4, 10)
    with pytest.raises(UsageError, match="the patch size must be an integer of at least 1, not 0"):
        SRPatches(files, 2, 0)
    with pytest.raises(UsageError, match="scale must be an integer of at least 1, not 1.5"):
        SRPatches(files, 1.5, 8)
    with pytest.raises(UsageError, match="patches per image must be an integer of at least 1, not 0"):
        SRPatches(files, 2, 8, patches_per_image=0)


def test_decoded_images_are_cached_within_the_byte_limit(tmp_path, monkeypatch):
    files = folder(tmp_path, 3, height=16, width=16)  # 768 bytes each
    reads = []
    real = sr.read_pixels
    monkeypatch.setattr(sr, "read_pixels", lambda path, c: reads.append(path) or real(path, c))
    patches = SRPatches(files, 2, 8, patches_per_image=2, cache_bytes=2 * 768)
    for index in (0, 1, 2, 3, 0, 2, 4, 5, 0):  # images 0, 0, 1, 1, 0, 1, 2, 2, 0
        patches[index]
    # images 0 and 1 fit together; image 2 pushes out 0, the least recently used
    assert reads == [files[0], files[1], files[2], files[0]]
    assert patches._cache.bytes <= 2 * 768


# --- validation images and reading ---------------------------------------------------------------


def test_validation_images_are_mod_cropped_with_their_lr(tmp_path):
    path = save(tmp_path / "v.png", pixels(23, 18))
    images = SRImages([path], 4, dtype=torch.float64)
    lr, hr = images[0]
    assert hr.shape == (3, 20, 16) and lr.shape == (3, 5, 4)
    whole = torch.from_numpy(pixels(23, 18)).permute(2, 0, 1).double() / 255
    assert torch.equal(hr, whole[:, :20, :16])
    torch.testing.assert_close(lr, bicubic_degrade(hr, 4), rtol=0, atol=0)


def test_validation_keeps_grey_images_grey_when_asked(tmp_path):
    paths = [save(tmp_path / "g.png", pixels(12, 12, 1)), save(tmp_path / "c.png", pixels(12, 12))]
    images = SRImages(paths, 2, channels=None)
    assert images[0][1].shape == (1, 12, 12) and images[1][1].shape == (3, 12, 12)
    assert SRImages(paths, 2)[0][1].shape == (3, 12, 12)


def test_an_image_smaller_than_the_scale_is_refused(tmp_path):
    path = save(tmp_path / "tiny.png", pixels(2, 9))
    with pytest.raises(UsageError, match="tiny.png: the image is smaller than the scale"):
        SRImages([path], 3)[0]


def test_exif_orientation_is_applied(tmp_path):
    array = pixels(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    path = save(tmp_path / "turned.png", array, exif=exif)
    assert image_size(path) == (10, 6)
    upright = read_pixels(path, 3)
    assert torch.equal(upright, torch.rot90(chw(array), -1, dims=(1, 2)))


def test_alpha_and_palette_images_give_their_colours(tmp_path):
    rgba = pixels(8, 8, 4)
    assert torch.equal(read_pixels(save(tmp_path / "a.png", rgba), 3), chw(rgba[:, :, :3]))
    palette = Image.fromarray(pixels(8, 8)).quantize(16)
    palette.save(tmp_path / "p.png")
    expected = chw(np.array(palette.convert("RGB")))
    assert torch.equal(read_pixels(tmp_path / "p.png", 3), expected)
    assert torch.equal(read_pixels(tmp_path / "p.png", None), expected)


def test_unreadable_and_sixteen_bit_images_are_refused(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UsageError, match="broken.png: cannot read the image"):
        read_pixels(tmp_path / "broken.png", 3)
    deep = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
    deep.save(tmp_path / "deep.png")
    with pytest.raises(UsageError, match="deep.png: a I;16 image .*16-bit.*convert it to 8-bit"):
        read_pixels(tmp_path / "deep.png", 3)


def test_a_folder_becomes_training_and_validation_sets(tmp_path):
    folder(tmp_path, 5, height=16, width=20)
    data = sr_folder_data(tmp_path, 2, 8, patches_per_image=3)
    assert data.name == f"folder:{tmp_path}" and data.scale == 2 and data.channels == 3
    assert len(data.train) == 12 and len(data.test) == 1
    assert data.test[0][1].shape == (3, 16, 20)


def test_the_sample_photographs_make_a_folder_with_held_out_images(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    image_module = pytest.importorskip("PIL.Image")
    assert samples.main([str(tmp_path / "photos"), "--scale", "2"]) == 0
    assert "wrote 14 images" in capsys.readouterr().out
    train, held_out = split_folder(tmp_path / "photos")
    assert [path.name for path in train] == ["china.png", "flower.png"]
    assert [path.name for path in held_out] == ["astronaut.png", "chelsea.png", "coffee.png", "rocket.png"]
    sizes = {path.stem: image_module.open(path).size for path in train + held_out}
    assert (
        sizes["china"] == (640, 427) and sizes["astronaut"] == (512, 512) and sizes["chelsea"] == (451, 300)
    )
    assert all(image_module.open(path).mode == "RGB" for path in train + held_out)
    # x2: the held-out photographs mod-cropped, and their LR as 8-bit MATLAB bicubic shrinks
    hr = read_pixels(tmp_path / "photos" / "x2" / "hr" / "chelsea.png", 3)
    lr = read_pixels(tmp_path / "photos" / "x2" / "lr" / "chelsea.png", 3)
    assert tuple(hr.shape) == (3, 300, 450) and tuple(lr.shape) == (3, 150, 225)
    expected = (bicubic_degrade(hr.double() / 255, 2).clamp(0, 1) * 255 + 0.5).floor()
    assert torch.equal(lr.double(), expected)
    assert torch.equal(hr, read_pixels(tmp_path / "photos" / "val" / "chelsea.png", 3)[:, :, :450])
    with pytest.raises(SystemExit):
        samples.main([])
    assert "usage: python -m cliquegen.data.samples" in capsys.readouterr().err
    assert samples.main([str(tmp_path / "p"), "--scale", "1"]) == 2
    assert "the scale must be an integer of at least 2, not 1" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert samples.main([str(tmp_path / "file" / "photos")]) == 2
    assert "cliquegen: error: cannot make" in capsys.readouterr().err
