"""Readers of the standard distribution files of CIFAR-10, CIFAR-100 and SVHN, and their download.

torchvision's dataset classes read these files, but its wheel cannot be imported beside a CPU
build of torch that lacks the CUDA libraries it links, so cliquegen reads the same formats
itself:

- CIFAR "python version": pickles of a dict of a uint8 array and lists.  They are parsed by
  :mod:`cliquegen.data.safe_readers`, not unpickled: nothing named in a file is called.
- SVHN: MATLAB 5 files (``X``: 32x32x3xN uint8, ``y``: labels 1..10, 10 meaning the digit 0),
  read with ``scipy.io.loadmat`` once :mod:`cliquegen.data.matlab` has checked what their
  variables declare (no compression bombs, no oversized arrays).

``--download`` fetches the archives from their authors' sites with urllib and checks the MD5
sums that those sites (and torchvision) publish before using them.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import MAX_FILE_BYTES, atomic_output
from ..errors import UsageError, import_extra
from ..spec.limits import MAX_CLASS_NAME
from .base import Arrays
from .matlab import check_mat_file
from .safe_readers import read_cifar_batch

CIFAR10_FOLDER, CIFAR100_FOLDER = "cifar-10-batches-py", "cifar-100-python"
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}

#: (url, md5) of every file --download fetches, per data set.
DOWNLOADS: dict[str, list[tuple[str, str]]] = {
    "cifar10": [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
    ],
    "cifar100": [
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")
    ],
    "svhn": [
        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ("http://ufldl.stanford.edu/housenumbers/extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
    ],
}


# --- CIFAR ---------------------------------------------------------------------------------------


def read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR batch or meta file: the dict it holds (keys as str), parsed without unpickling."""
    return read_cifar_batch(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UsageError(f"{path}: its {size:,} bytes are over the {MAX_FILE_BYTES:,}-byte limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None


def _cifar_batch(path: Path, label_key: str, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = read_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise UsageError(f"{path}: no {key!r} entry; is this a CIFAR python-version file?")
    data, listed = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UsageError(f"{path}: 'data' must be an N x 3072 uint8 array")
    if not isinstance(listed, list) or len(listed) != len(data) or not all(type(n) is int for n in listed):
        raise UsageError(f"{path}: {label_key!r} must list one integer label per image")
    labels = np.array(listed, dtype=np.int64)  # the parser reads integers of at most 8 bytes
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise UsageError(f"{path}: labels must lie in 0..{classes - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are R, G, B planes
    return images, torch.from_numpy(labels.astype(np.int64))


def _class_names(path: Path, key: str, count: int) -> list[str]:
    names = read_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != count:
        raise UsageError(f"{path}: {key!r} must list the {count} class names")
    decoded = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    for name in decoded:  # shown by predict and recorded in checkpoints
        if not name.isprintable() or len(name) > MAX_CLASS_NAME:
            raise UsageError(f"{path}: the class name {name[:40]!r} is not one line of printable text")
    return decoded


def _cifar_root(root: Path, folder: str, marker: str) -> Path:
    """``root`` itself, or its ``folder`` sub-folder (where the archive unpacks)."""
    for candidate in (root / folder, root):
        if (candidate / marker).is_file():
            return candidate
    raise UsageError(
        f"{root}: no CIFAR python-version files (expected {root / folder / marker}); "
        "pass --download to fetch them"
    )


def read_cifar10(root: Path) -> Arrays:
    folder = _cifar_root(root, CIFAR10_FOLDER, "batches.meta")
    classes = _class_names(folder / "batches.meta", "label_names", 10)
    parts = [_cifar_batch(folder / f"data_batch_{k}", "labels", 10) for k in range(1, 6)]
    test = _cifar_batch(folder / "test_batch", "labels", 10)
    train_images = torch.cat([images for images, _ in parts])
    train_labels = torch.cat([labels for _, labels in parts])
    return Arrays(train_images, train_labels, *test, classes)


def read_cifar100(root: Path) -> Arrays:
    folder = _cifar_root(root, CIFAR100_FOLDER, "meta")
    classes = _class_names(folder / "meta", "fine_label_names", 100)
    train = _cifar_batch(folder / "train", "fine_labels", 100)
    test = _cifar_batch(folder / "test", "fine_labels", 100)
    return Arrays(*train, *test, classes)


# --- SVHN ----------------------------------------------------------------------------------------


def _svhn_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    io_module = import_extra("scipy.io", "train", "reading SVHN")
    _check_size(path)
    check_mat_file(path, MAX_FILE_BYTES)
    try:
        mat = io_module.loadmat(path, variable_names=["X", "y"])
    except Exception as error:  # scipy reports damage as ValueError, TypeError, MatReadError ...
        raise UsageError(
            f"{path}: cannot read it as a MATLAB file: {type(error).__name__}: {error}"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise UsageError(f"{path}: expected the variables X and y of the SVHN distribution")
    images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise UsageError(f"{path}: X must be a 32 x 32 x 3 x N uint8 array")
    if len(labels) != images.shape[3] or not np.issubdtype(labels.dtype, np.number):
        raise UsageError(f"{path}: y must hold one label per image")
    if len(labels) and (labels.min() < 1 or labels.max() > 10 or not np.all(labels == np.round(labels))):
        raise UsageError(f"{path}: labels must be 1..10 (10 is the digit 0)")
    digits = labels.astype(np.int64) % 10
    chw = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))  # (N, 3, 32, 32)
    return chw, torch.from_numpy(digits)


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; pass --download to fetch it") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{path}: its {size:,} bytes are over the {MAX_FILE_BYTES:,}-byte limit")


def read_svhn(root: Path) -> Arrays:
    train_images, train_labels = _svhn_file(root / SVHN_FILES["train"])
    if (root / SVHN_FILES["extra"]).is_file():  # the authors train on train + extra
        extra_images, extra_labels = _svhn_file(root / SVHN_FILES["extra"])
        train_images = torch.cat([train_images, extra_images])
        train_labels = torch.cat([train_labels, extra_labels])
    test = _svhn_file(root / SVHN_FILES["test"])
    return Arrays(train_images, train_labels, *test, [str(k) for k in range(10)])


READERS: dict[str, Callable[[Path], Arrays]] = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "svhn": read_svhn,
}


# --- download ------------------------------------------------------------------------------------


def download(kind: str, root: Path) -> None:
    """Fetch what ``kind`` needs into ``root`` unless it is there; verify every MD5."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {root}: {error.strerror or error}") from None
    for url, md5 in DOWNLOADS[kind]:
        name = url.rsplit("/", 1)[-1]
        if name.endswith(".tar.gz"):
            folder = CIFAR10_FOLDER if kind == "cifar10" else CIFAR100_FOLDER
            if not (root / folder).is_dir():
                _fetch_archive(url, md5, root, folder)
        elif not (root / name).is_file():
            with atomic_output(root / name, root=root) as tmp:
                _fetch(url, md5, tmp)


def _fetch(url: str, md5: str, target: Path) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise UsageError(f"cannot download {url}: {reason}; fetch it by hand into the data folder") from None
    if digest.hexdigest() != md5:
        raise UsageError(f"{url}: the download's MD5 is {digest.hexdigest()}, not the published {md5}")


def _fetch_archive(url: str, md5: str, root: Path, folder: str) -> None:
    """Download a CIFAR archive and unpack its one folder into ``root`` (all or nothing)."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        archive = Path(scratch) / "archive.tar.gz"
        _fetch(url, md5, archive)
        unpacked = Path(scratch) / "unpacked"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")  # no links out, no absolute paths
        except (tarfile.TarError, OSError) as error:
            raise UsageError(f"{url}: cannot unpack the archive: {error}") from None
        if not (unpacked / folder).is_dir():
            raise UsageError(f"{url}: the archive holds no {folder}/ folder")
        shutil.move(str(unpacked / folder), str(root / folder))
