"""What every data set hands to training: the records (:class:`ImageData`, :class:`Arrays`,
:class:`Normalization`), the in-memory dataset with its standard augmentation, and the check
that a spec fits the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import UsageError, dims
from ..spec.model import Spec

TEST_FRACTION = 0.2  # of a set without a test split (bundled sets, image folders)
AUGMENTATIONS = ("none", "standard")


PAD = 4  # pixels of zero padding around an image before its random crop (standard augmentation)


@dataclass
class ImageData:
    """A train and a test set of (image (C, H, W) float tensor, label) pairs."""

    name: str
    train: Dataset
    test: Dataset
    channels: int
    height: int
    width: int
    classes: list[str]
    mean: list[float]  # per channel, of pixels in [0, 1]
    std: list[float]
    kind: str = "array"  # "array" (32x32 and bundled sets) or "folder"


@dataclass(frozen=True)
class Normalization:
    mean: list[float]
    std: list[float]


def check_compatible(data: ImageData, spec: Spec) -> None:
    """The spec must be built for the data's image shape and class count."""
    want = (spec.input.channels, spec.input.height, spec.input.width)
    have = (data.channels, data.height, data.width)
    if want != have:
        raise UsageError(
            f"spec {spec.name!r} takes {dims(want)} inputs, but {data.name} has {dims(have)} images; "
            f"set `input: {{channels: {have[0]}, height: {have[1]}, width: {have[2]}}}` in the spec"
        )
    if spec.num_classes != len(data.classes) and "num_classes" in spec.overridden:
        raise UsageError(
            f"--num-classes {spec.num_classes} does not fit {data.name}, which has {len(data.classes)} "
            f"classes; pass --num-classes {len(data.classes)} (spec {spec.name!r} itself has num_classes: "
            f"{spec.overridden['num_classes']})"
        )
    if spec.num_classes != len(data.classes):
        raise UsageError(
            f"spec {spec.name!r} has num_classes: {spec.num_classes}, but {data.name} has "
            f"{len(data.classes)} classes; set `num_classes: {len(data.classes)}` in the spec "
            "(or pass --num-classes)"
        )


@dataclass
class Arrays:
    """A whole data set in memory: (N, C, H, W) uint8 or [0, 1] float images, (N,) labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]


class ArrayDataset(Dataset):
    """Images held in memory, scaled to [0, 1], optionally augmented, then normalised."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, norm: Normalization, augment: bool):
        self.images = images
        self.labels = labels
        self.mean = torch.tensor(norm.mean).reshape(-1, 1, 1)
        self.std = torch.tensor(norm.std).reshape(-1, 1, 1)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = _unit(self.images[index])
        if self.augment:
            image = padded_random_crop(image, PAD)
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
        return (image - self.mean) / self.std, int(self.labels[index])


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as floats in [0, 1]; float images are already there."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def padded_random_crop(image: torch.Tensor, pad: int) -> torch.Tensor:
    """A crop of the image's own size from the image zero-padded by ``pad`` pixels. (C, H, W)"""
    _, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad))
    top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,)))
    return padded[:, top : top + h, left : left + w]


def channel_statistics(images: torch.Tensor) -> Normalization:
    """Per-channel mean and std of (N, C, H, W) images, in [0, 1] units, in float64."""
    n, c = images.shape[:2]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 4096):  # in chunks: 50,000 CIFAR images in float64 would be 1.2 GB
        chunk = _unit(images[start : start + 4096]).double()
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).mul(count / max(count - 1, 1)).sqrt()
    return Normalization(mean.tolist(), std.clamp_min(1e-6).tolist())
