"""Image folders: one sub-folder of PNG/JPEG images per class (or the ImageNet layout with
``train/`` and ``test/`` or ``val/``), read lazily with PIL.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UsageError, import_extra, printable
from ..spec.model import Spec
from .base import TEST_FRACTION, ImageData, Normalization, channel_statistics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


#: Images the per-channel statistics of an image folder are computed from.
STATISTICS_SAMPLE = 512


class ImageFolder(Dataset):
    """Images read lazily with PIL and converted to the spec's channels and size.

    Without augmentation an image is resized to the input size.  ``train_augment`` picks a
    random-resized crop (scale 0.08..1, aspect ratio 3/4..4/3) and a horizontal flip;
    ``eval_crop`` resizes the shorter side to 256/224 of the input size and takes the centre crop.
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        channels: int,
        size: tuple[int, int],
        *,
        train_augment: bool = False,
        eval_crop: bool = False,
    ):
        self.samples = samples
        self.mode = {1: "L", 3: "RGB"}[channels]
        self.size = size  # (height, width)
        self.mean = torch.zeros(channels, 1, 1)
        self.std = torch.ones(channels, 1, 1)
        self.train_augment = train_augment
        self.eval_crop = eval_crop

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int, *, plain: bool = False) -> torch.Tensor:
        """Image ``index`` as a (C, H, W) float tensor in [0, 1]."""
        return read_image(self.samples[index][0], self.mode, self.size, self._transform(plain))

    def _transform(self, plain: bool) -> str:
        if plain:
            return "resize"
        return "random-resized-crop" if self.train_augment else "centre-crop" if self.eval_crop else "resize"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return (self.read(index) - self.mean) / self.std, self.samples[index][1]


#: The formats Pillow may decode, whatever a file is named: raster formats decoded in this
#: process.  Others (EPS, which Pillow renders by running Ghostscript, and rarer formats)
#: are refused as unidentified.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # JPEG includes MPO (camera JPEGs)
#: Images of more pixels than this are refused before they are decoded (an 8192 x 8192 photo
#: has 67 million; a decoded RGB image costs 3 bytes a pixel, and its conversion as much again).
MAX_IMAGE_PIXELS = 1 << 26
#: Modes in which Pillow opens 16-bit greyscale PNGs (values 0..65535).
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")
#: What a damaged or hostile image file makes Pillow raise while it is opened or decoded
#: (an oversized text chunk is a ValueError, a broken PNG a SyntaxError ...).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error, zlib.error)


def read_image(path: Path, mode: str, size: tuple[int, int], transform: str = "resize") -> torch.Tensor:
    """The image at ``path`` converted to ``mode`` ("L" or "RGB") and brought to ``size`` (H, W)
    by ``transform``: "resize", "centre-crop" (shorter side to 256/224 of the size, then the
    centre) or "random-resized-crop" (with a horizontal flip half the time). (C, H, W) in [0, 1]

    The work is bounded by the file's pixels and the output size: images over
    :data:`MAX_IMAGE_PIXELS` are refused unread, and the crops resample only the region they
    keep.  16-bit greyscale is scaled to 8 bits, not clipped.  A file Pillow cannot decode is a
    UsageError naming it (:class:`ImageError`, which stays one line across DataLoader workers).
    """
    image_module = import_extra("PIL.Image", "train", "reading images")
    image = _decoded(path, mode, image_module)
    height, width = size
    bilinear = image_module.Resampling.BILINEAR
    if transform == "centre-crop":
        image = image.resize((width, height), bilinear, box=_centre_box(image.size, height, width))
    elif transform == "random-resized-crop":
        box = _random_resized_box(*image.size)
        image = image.resize((width, height), bilinear, box=box)
        if torch.rand(()) < 0.5:
            image = image.transpose(image_module.Transpose.FLIP_LEFT_RIGHT)
    else:
        image = image.resize((width, height), bilinear)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.reshape(height, width, len(mode)).permute(2, 0, 1).float() / 255.0


class ImageError(UsageError):
    """An image that cannot be read.  Raised in a DataLoader worker, it reaches the main
    process rebuilt from a message that carries the worker's traceback; it keeps only its
    own line, so the command still prints one line."""

    def __init__(self, message: str):
        super().__init__(_worker_message(message, type(self).__name__))


def _worker_message(message: str, name: str) -> str:
    """``message`` without the traceback torch's DataLoader wraps a worker's error in."""
    if not message.startswith(f"Caught {name} ") or "\nOriginal Traceback" not in message:
        return message
    own = re.search(rf"\n(?:[\w.]+\.)?{name}: (.*)\Z", message.rstrip("\n"), re.DOTALL)
    return own.group(1) if own else message


def _decoded(path: Path, mode: str, image_module):
    """The decoded image in ``mode``, or ImageError."""
    image_module.init()  # registers every format's plugin (WEBP among them); once
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            with image_module.open(path, formats=IMAGE_FORMATS) as opened:
                pixels = opened.size[0] * opened.size[1]
                if pixels > MAX_IMAGE_PIXELS:
                    raise ImageError(
                        f"{path}: refused: {opened.size[0]:,} x {opened.size[1]:,} pixels, over the "
                        f"limit of {MAX_IMAGE_PIXELS:,}"
                    )
                if opened.mode in _SIXTEEN_BIT:
                    return _eight_bit(opened, image_module).convert(mode)
                return opened.convert(mode)
    except (image_module.DecompressionBombError, image_module.DecompressionBombWarning) as error:
        raise ImageError(f"{path}: refused: {error}") from None
    except image_module.UnidentifiedImageError:
        shown = ", ".join(IMAGE_FORMATS[:-1]) + f" or {IMAGE_FORMATS[-1]}"
        raise ImageError(f"{path}: cannot read the image: it is not a {shown} file") from None
    except _DECODE_ERRORS as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ImageError(f"{path}: cannot read the image ({reason})") from None


def _eight_bit(image, image_module):
    """A 16-bit greyscale image as 8-bit "L": 0..65535 scaled to 0..255 (Pillow would clip)."""
    values = np.asarray(image.convert("I"), dtype=np.int64).clip(0, 65535)
    return image_module.fromarray(((values + 128) // 257).astype(np.uint8), "L")


def _centre_box(image_size: tuple[int, int], height: int, width: int) -> tuple[float, float, float, float]:
    """The region of the image that "centre-crop" keeps: the image scaled so that its shorter
    side is 256/224 of the input's longer side, then the centre (H, W); in image pixels."""
    image_width, image_height = image_size
    scale = 256 / 224 * max(height, width) / min(image_size)
    scaled_width = max(max(1, round(image_width * scale)), width)
    scaled_height = max(max(1, round(image_height * scale)), height)
    across, down = scaled_width / image_width, scaled_height / image_height
    left, top = (scaled_width - width) // 2, (scaled_height - height) // 2
    return (left / across, top / down, (left + width) / across, (top + height) / down)


def _random_resized_box(width: int, height: int) -> tuple[float, float, float, float]:
    """A box of 8%..100% of the image's area with aspect ratio 3/4..4/3 (log-uniform), as in the
    usual ImageNet recipe: ten tries, then the centre square-ish crop."""
    area = width * height
    for _ in range(10):
        target = area * float(torch.empty(()).uniform_(0.08, 1.0))
        ratio = math.exp(float(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3))))
        w, h = math.sqrt(target * ratio), math.sqrt(target / ratio)
        if w <= width and h <= height:
            left = float(torch.empty(()).uniform_(0, width - w))
            top = float(torch.empty(()).uniform_(0, height - h))
            return (left, top, left + w, top + h)
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_names(root: Path) -> list[str]:
    """The class sub-folders of ``root``; their names become the class names a checkpoint
    records and commands print, so names with control characters are refused."""
    names = [p.name for p in _class_folders(root)]
    for name in names:
        if not name.isprintable():
            raise UsageError(
                f"{printable(str(root / name))}: a class folder name with control or format "
                "characters; rename it"
            )
    return names


def _samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """Every image of every class folder there is under ``root`` (a missing folder has none);
    a class folder without images is refused (it would train a class never seen)."""
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise UsageError(
                f"{folder}: the class folder holds no {'/'.join(IMAGE_SUFFIXES)} images; "
                "add some or remove the folder"
            )
        samples += [(path, label) for path in files]
    return samples


def folder_data(root: Path, spec: Spec, augment: str, norm: Normalization | None) -> ImageData:
    import_extra("PIL.Image", "train", "reading image folders")
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (folder:DIR needs one sub-folder of images per class)")
    if spec.input.channels not in (1, 3):
        raise UsageError(
            f"spec {spec.name!r} takes {spec.input.channels}-channel inputs; image folders give 1 or 3"
        )
    size = (spec.input.height, spec.input.width)
    held_out = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and held_out is not None:
        classes = _class_names(root / "train")
        extra = sorted(set(_class_names(held_out)) - set(classes))
        if extra:
            raise UsageError(f"{held_out}: classes {', '.join(extra[:5])} have no folder in {root / 'train'}")
        train, test = _samples(root / "train", classes), _samples(held_out, classes)
    else:
        classes = _class_names(root)
        everything = _samples(root, classes)
        train, test = [], []
        stride = round(1 / TEST_FRACTION)
        for label in range(len(classes)):  # stratified: every 5th image of each class is a test image
            own = [s for s in everything if s[1] == label]
            test += own[stride - 1 :: stride]
            train += [s for k, s in enumerate(own) if k % stride != stride - 1]
    if not classes or not train or not test:
        raise UsageError(
            f"{root}: expected class sub-folders holding {'/'.join(IMAGE_SUFFIXES)} images "
            f"(found {len(classes)} classes, {len(train)} training and {len(test)} test images)"
        )
    standard = augment == "standard"
    train_set = ImageFolder(train, spec.input.channels, size, train_augment=standard)
    test_set = ImageFolder(test, spec.input.channels, size, eval_crop=standard)
    if norm is None:
        step = max(1, len(train) // STATISTICS_SAMPLE)
        sample = torch.stack([train_set.read(k, plain=True) for k in range(0, len(train), step)])
        norm = channel_statistics(sample)
    mean, std = (torch.tensor(v).reshape(-1, 1, 1) for v in (norm.mean, norm.std))
    for dataset in (train_set, test_set):
        dataset.mean, dataset.std = mean, std
    return ImageData(
        name=f"folder:{root}",
        train=train_set,
        test=test_set,
        channels=spec.input.channels,
        height=size[0],
        width=size[1],
        classes=classes,
        mean=norm.mean,
        std=norm.std,
        kind="folder",
    )
