"""Super-resolution data: a folder of high-resolution (HR) photographs becomes pairs of a
low-resolution (LR) input and the HR image it must give back.

- The LR image is the HR one shrunk by the scale with MATLAB's antialiased bicubic
  (:func:`cliquegen.data.resize.bicubic_degrade`), the degradation the benchmarks use.  It is
  kept in floating point, neither clamped to [0, 1] nor rounded to 8 bits: that is how the
  published bicubic rows were computed (clamping and rounding it to 8 bits lowers Set14's
  bicubic PSNR by 0.013-0.016 dB).
- Training (:class:`SRPatches`): random HR patches of ``patch_size`` HR pixels (a multiple of the
  scale), each in one of the 8 orientations that flips and 90-degree rotations give, paired with
  its LR patch.  The LR patch is the matching crop of the whole image's LR image, computed from
  the patch and a margin of ``DEGRADE_MARGIN`` LR pixels around it (so no patch border is
  mirrored where the image goes on).  An epoch is ``patches_per_image`` patches of every image.
- Validation (:class:`SRImages`): whole images, mod-cropped to the scale (the top-left part whose
  sides are multiples of it), and their LR images.

Images are read lazily (PNG or JPEG, any size, EXIF orientation applied) and converted to RGB
or grey; a training set keeps recently decoded images in a cache of at most ``cache_bytes``.
Tensors are (C, H, W) float32 with pixels in [0, 1].  Random choices draw from torch's
generator.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import UsageError, import_extra
from .base import TEST_FRACTION
from .folder import IMAGE_SUFFIXES
from .resize import bicubic_degrade, modcrop

#: Random patches per image and epoch by default: 125 batches of 16 per image, so that an epoch
#: over a handful of photographs teaches something.  EDSR's epoch (1000 batches of 16 from
#: DIV2K's 800 images) is 20 per image.
PATCHES_PER_IMAGE = 2000
#: LR pixels of context on each side of a training patch: the kernel of a shrink by s reaches
#: 2 s HR pixels (2 LR pixels) from an LR pixel's centre.
DEGRADE_MARGIN = 2
#: Decoded images a training set keeps, in bytes, per data-loader process.
CACHE_BYTES = 256 * 2**20
#: EXIF orientations (tag 0x0112) that turn the image by 90 degrees, swapping its sides.
_TURNED = (5, 6, 7, 8)
_ORIENTATION = 0x0112
_MODES = {1: "L", 3: "RGB"}


def _pil():
    return import_extra("PIL.Image", "train", "reading images")


def open_image(path: str | os.PathLike[str]):
    """The image at ``path``, loaded and made ready by :func:`upright_8bit`."""
    image_module = _pil()
    try:
        with image_module.open(path) as opened:
            opened.load()
            return upright_8bit(opened, path)
    except (OSError, SyntaxError, ValueError) as error:
        raise UsageError(f"{path}: cannot read the image ({error})") from None
    except image_module.DecompressionBombError as error:
        raise UsageError(f"{path}: refused: {error}") from None


def upright_8bit(image, name: str | os.PathLike[str] = "image"):
    """A PIL image turned upright (EXIF orientation applied) in mode L, LA, RGB or RGBA:
    palette and 1-bit images are expanded, CMYK and YCbCr converted.  16-bit and
    floating-point images are refused (8-bit pipelines only)."""
    ops = import_extra("PIL.ImageOps", "train", "reading images")
    image = ops.exif_transpose(image)
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise UsageError(
        f"{name}: a {mode} image ({'16-bit' if mode.startswith('I') else 'floating-point'} or "
        "unusual pixels); convert it to 8-bit RGB or grey first"
    )


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the upright image, from its header alone."""
    image_module = _pil()
    try:
        with image_module.open(path) as opened:
            width, height = opened.size
            turned = opened.getexif().get(_ORIENTATION) in _TURNED
    except (OSError, SyntaxError, ValueError) as error:
        raise UsageError(f"{path}: cannot read the image ({error})") from None
    return (width, height) if turned else (height, width)


def read_pixels(path: Path, channels: int | None) -> torch.Tensor:
    """The upright image at ``path`` as a (C, H, W) uint8 tensor, converted to RGB (``channels``
    3) or grey (1), or as it is (``None``: grey stays grey); an alpha channel is dropped."""
    if channels is not None and channels not in _MODES:
        raise UsageError(f"super-resolution reads RGB or grey images, not {channels}-channel ones")
    image = open_image(path)
    if channels is None:
        channels = 1 if image.mode in ("L", "LA") else 3
    image = image.convert(_MODES[channels])
    width, height = image.size
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.reshape(height, width, channels).permute(2, 0, 1).contiguous()


def scored_channels(model_channels: int) -> int | None:
    """How a model's held-out images are read: as they are for an RGB model (a grey image is
    scored as grey, as the bicubic baseline scores it), converted to grey for a grey model."""
    return None if model_channels == 3 else model_channels


def image_files(root: Path) -> list[Path]:
    """The PNG and JPEG files under ``root``, sorted (hidden files and folders skipped)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def split_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """Training and validation images of a folder: ``root/train/`` and ``root/val/`` (or
    ``root/test/``) when both are there; else every 5th image (sorted) is held out, or the last
    one when there are fewer than 5."""
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (folder:DIR needs a folder of PNG/JPEG images)")
    held_out = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        train, test = image_files(root / "train"), image_files(held_out)
    else:
        everything = image_files(root)
        stride = round(1 / TEST_FRACTION)
        test = everything[stride - 1 :: stride] or everything[-1:]
        train = [p for p in everything if p not in test]
    if not train or not test:
        raise UsageError(
            f"{root}: super-resolution needs at least 2 {'/'.join(IMAGE_SUFFIXES)} images, one to train on "
            f"and one to validate on (found {len(train)} training and {len(test)} validation images)"
        )
    return train, test


def whole_number(value, what: str, least: int = 1) -> int:
    """``value`` when it is an integer of at least ``least``; else a usage error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise UsageError(f"{what} must be an integer of at least {least}, not {value!r}")
    return value


def augment_pair(lr: torch.Tensor, hr: torch.Tensor, which: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair in orientation ``which`` (0..7): bit 0 flips left-right, bit 1 upside down,
    bit 2 swaps height and width; together the 8 flips and 90-degree rotations."""
    if which & 1:
        lr, hr = lr.flip(-1), hr.flip(-1)
    if which & 2:
        lr, hr = lr.flip(-2), hr.flip(-2)
    if which & 4:
        lr, hr = lr.transpose(-1, -2), hr.transpose(-1, -2)
    return lr.contiguous(), hr.contiguous()


class _ImageCache:
    """Decoded images, the least recently used dropped first past ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.images: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.bytes = 0

    def get(self, key: int, load) -> torch.Tensor:
        if key in self.images:
            self.images.move_to_end(key)
            return self.images[key]
        image = load()
        size = image.numel()
        while self.images and self.bytes + size > self.limit:
            self.bytes -= self.images.popitem(last=False)[1].numel()
        if size <= self.limit:
            self.images[key] = image
            self.bytes += size
        return image


class SRPatches(Dataset):
    """Random (LR, HR) training patches: item ``i`` is a random patch of image
    ``i // patches_per_image``; LR (C, p/s, p/s), HR (C, p, p) for ``patch_size`` p."""

    def __init__(
        self,
        files: list[Path],
        scale: int,
        patch_size: int,
        *,
        channels: int = 3,
        patches_per_image: int = PATCHES_PER_IMAGE,
        augment: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ):
        self.scale = whole_number(scale, "the super-resolution scale")
        whole_number(patches_per_image, "patches per image")
        if whole_number(patch_size, "the patch size") % scale:
            raise UsageError(
                f"the patch size ({patch_size} HR pixels) must be a multiple of the scale ({scale}), "
                f"e.g. {patch_size - patch_size % scale or scale}"
            )
        if not files:
            raise UsageError("no training images")
        for path in files:
            height, width = image_size(path)
            if min(height, width) < patch_size:
                raise UsageError(
                    f"{path}: the image is {height}x{width}, smaller than the {patch_size}x{patch_size} "
                    "training patches; use a smaller --patch-size or leave the image out"
                )
        self.files = list(files)
        self.channels = channels
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.augment = augment
        self._cache = _ImageCache(cache_bytes)

    def __len__(self) -> int:
        return len(self.files) * self.patches_per_image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        number = index // self.patches_per_image
        image = self._cache.get(number, lambda: read_pixels(self.files[number], self.channels))
        s, p = self.scale, self.patch_size // self.scale  # p: the patch side in LR pixels
        lr_height, lr_width = image.shape[1] // s, image.shape[2] // s
        if min(lr_height, lr_width) < p:  # its header said otherwise
            raise UsageError(
                f"{self.files[number]}: the image is {image.shape[1]}x{image.shape[2]}, smaller than the "
                f"{self.patch_size}x{self.patch_size} training patches"
            )
        top, left = (int(torch.randint(0, n - p + 1, ())) for n in (lr_height, lr_width))
        lr, hr = degrade_crop(image, s, top, left, p)
        if self.augment:
            lr, hr = augment_pair(lr, hr, int(torch.randint(0, 8, ())))
        return lr, hr


def degrade_crop(image: torch.Tensor, scale: int, top: int, left: int, size: int):
    """The LR patch of ``size`` x ``size`` LR pixels at (``top``, ``left``) of the mod-cropped
    ``image`` (uint8 (C, H, W)) and its HR patch, as float32: the LR patch equals that crop of the
    whole image's LR image, computed from the patch and ``DEGRADE_MARGIN`` LR pixels around it."""
    m = DEGRADE_MARGIN
    lr_height, lr_width = image.shape[1] // scale, image.shape[2] // scale
    t0, l0 = max(0, top - m), max(0, left - m)
    t1, l1 = min(lr_height, top + size + m), min(lr_width, left + size + m)
    region = image[:, t0 * scale : t1 * scale, l0 * scale : l1 * scale].float() / 255.0
    lr = bicubic_degrade(region, scale)[:, top - t0 : top - t0 + size, left - l0 : left - l0 + size]
    hr_top, hr_left = (top - t0) * scale, (left - l0) * scale
    hr = region[:, hr_top : hr_top + size * scale, hr_left : hr_left + size * scale]
    return lr.contiguous(), hr.contiguous()


class SRImages(Dataset):
    """Whole validation images: item ``i`` is (LR, HR) of image ``i`` mod-cropped to the scale,
    LR (C, H/s, W/s), HR (C, H, W).  ``channels`` None keeps each image's own (grey or RGB);
    ``dtype`` float64 gives the LR image's last bits."""

    def __init__(
        self,
        files: list[Path],
        scale: int,
        *,
        channels: int | None = 3,
        dtype: torch.dtype = torch.float32,
    ):
        self.scale = whole_number(scale, "the super-resolution scale")
        self.files = list(files)
        self.channels = channels
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.files)

    def hr(self, index: int) -> torch.Tensor:
        """Image ``index`` mod-cropped, (C, H, W) uint8; refused when smaller than the scale."""
        path = self.files[index]
        image = modcrop(read_pixels(path, self.channels), self.scale)
        if min(image.shape[1:]) == 0:
            raise UsageError(f"{path}: the image is smaller than the scale ({self.scale})")
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        hr = self.hr(index).to(self.dtype) / 255.0
        return bicubic_degrade(hr, self.scale), hr


@dataclass
class SRData:
    """A super-resolution training set and validation set made from one folder."""

    name: str
    train: SRPatches
    test: SRImages
    channels: int
    scale: int
    patch_size: int


def sr_folder_data(
    root: str | os.PathLike[str],
    scale: int,
    patch_size: int,
    *,
    channels: int = 3,
    patches_per_image: int = PATCHES_PER_IMAGE,
    augment: bool = True,
) -> SRData:
    """The training patches and validation images of the folder ``root`` (see
    :func:`split_folder` for which images are held out)."""
    _pil()
    root = Path(root)
    train, test = split_folder(root)
    return SRData(
        name=f"folder:{root}",
        train=SRPatches(
            train, scale, patch_size, channels=channels, patches_per_image=patches_per_image, augment=augment
        ),
        test=SRImages(test, scale, channels=scored_channels(channels)),
        channels=channels,
        scale=scale,
        patch_size=patch_size,
    )
