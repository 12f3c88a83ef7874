"""Image folders: one sub-folder of PNG/JPEG images per class (or the ImageNet layout with
``train/`` and ``test/`` or ``val/``), read lazily with PIL.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import UsageError, import_extra
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


def read_image(path: Path, mode: str, size: tuple[int, int], transform: str = "resize") -> torch.Tensor:
    """The image at ``path`` converted to ``mode`` ("L" or "RGB") and brought to ``size`` (H, W)
    by ``transform``: "resize", "centre-crop" (shorter side to 256/224 of the size, then the
    centre) or "random-resized-crop" (with a horizontal flip half the time). (C, H, W) in [0, 1]"""
    image_module = import_extra("PIL.Image", "train", "reading images")
    height, width = size
    bilinear = image_module.Resampling.BILINEAR
    try:
        with image_module.open(path) as opened:
            image = opened.convert(mode)
            if transform == "centre-crop":
                scale = 256 / 224 * max(height, width) / min(image.size)
                w, h = (max(1, round(v * scale)) for v in image.size)
                image = image.resize((max(w, width), max(h, height)), bilinear)
                left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
                image = image.crop((left, top, left + width, top + height))
            elif transform == "random-resized-crop":
                box = _random_resized_box(*image.size)
                image = image.resize((width, height), bilinear, box=box)
                if torch.rand(()) < 0.5:
                    image = image.transpose(image_module.Transpose.FLIP_LEFT_RIGHT)
            else:
                image = image.resize((width, height), bilinear)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except OSError as error:
        raise UsageError(f"{path}: cannot read the image ({error})") from None
    except image_module.DecompressionBombError as error:
        raise UsageError(f"{path}: refused: {error}") from None
    return pixels.reshape(height, width, len(mode)).permute(2, 0, 1).float() / 255.0


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


def _samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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
        classes = [p.name for p in _class_folders(root / "train")]
        extra = sorted({p.name for p in _class_folders(held_out)} - set(classes))
        if extra:
            raise UsageError(f"{held_out}: classes {', '.join(extra[:5])} have no folder in {root / 'train'}")
        train, test = _samples(root / "train", classes), _samples(held_out, classes)
    else:
        classes = [p.name for p in _class_folders(root)]
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
