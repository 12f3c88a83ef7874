"""``cliquegen eval`` and ``cliquegen predict``: a trained model on a data set, or on images;
:func:`evaluate_model`, the test scores of a model, which every training epoch also reports.

Both build the spec's model, load the weights strictly (a checkpoint from ``cliquegen train``
or a plain state_dict) and take the class names and the input normalisation from the
checkpoint's :class:`~cliquegen.checkpoint.ModelInfo`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..checkpoint.info import ModelInfo
from ..checkpoint.load import load_trained
from ..data.folder import read_image
from ..data.sets import ImageData, Normalization, load_data
from ..errors import UsageError
from ..spec.model import Spec
from .config import AMP_DTYPES
from .distributed import use_cuda


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    workers: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
    amp: str | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy over the whole ``dataset`` (each rank scores every
    world_size-th image; the sums are reduced over the ranks)."""
    if not len(dataset):  # every rank sees the same length: all stop together
        raise UsageError("no test images to evaluate: the test split is empty")
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    generator = torch.Generator().manual_seed(0)  # evaluation draws nothing from the run's RNG
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers, generator=generator)
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1, top-5, images
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(
                device.type, dtype=AMP_DTYPES.get(amp, torch.float32), enabled=amp is not None
            ):
                logits = model(images)
            logits = logits.float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top == labels[:, None]
            sums += torch.stack(
                [
                    F.cross_entropy(logits, labels, reduction="sum").double(),
                    hits[:, 0].sum().double(),
                    hits.any(dim=1).sum().double(),
                    sums.new_tensor(len(labels)),
                ]
            )
    if world_size > 1:
        dist.all_reduce(sums)
    count = float(sums[3])
    return {"loss": float(sums[0]) / count, "top1": float(sums[1]) / count, "top5": float(sums[2]) / count}


#: Images ``predict`` reads and runs at once.
PREDICT_BATCH = 64


def _device(device: str) -> torch.device:
    return torch.device("cuda" if use_cuda(device) else "cpu")


def load_test_view(data: str, spec: Spec, info: ModelInfo | None) -> ImageData:
    """``data`` with its test images prepared as the checkpoint's run prepared them: its
    normalisation and, for image folders, its centre crop (else as ``cliquegen train`` would)."""
    norm = Normalization(info.mean, info.std) if info is not None and info.mean is not None else None
    augment = "standard" if info is not None and info.eval_transform == "centre-crop" else "none"
    return load_data(data, spec, augment=augment, normalization=norm)


def evaluate(
    spec: str | os.PathLike | Spec,
    weights: str | os.PathLike,
    data: str,
    *,
    batch_size: int = 256,
    workers: int = 0,
    device: str = "auto",
    subset: int | None = None,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy of the trained model on the test split of ``data``."""
    trained = load_trained(spec, weights)
    info = trained.info
    dataset = load_test_view(data, trained.spec, info)
    if info is not None and info.classes is not None and info.classes != dataset.classes:
        raise UsageError(
            f"{weights} was trained on the classes {_names(info.classes)}, but {dataset.name} has "
            f"{_names(dataset.classes)}"
        )
    test = dataset.test if subset is None else Subset(dataset.test, range(min(subset, len(dataset.test))))
    where = _device(device)
    scores = evaluate_model(trained.model.to(where), test, where, batch_size, workers)
    return {
        "spec": trained.spec.name,
        "weights": str(weights),
        "data": dataset.name,
        "images": len(test),
        "loss": scores["loss"],
        "top1": scores["top1"],
        "top5": scores["top5"],
        "normalization": "from the checkpoint"
        if info is not None and info.mean is not None
        else "from the data set",
    }


def _names(classes: list[str]) -> str:
    shown = ", ".join(classes[:5]) + (f", ... ({len(classes)} in all)" if len(classes) > 5 else "")
    return f"[{shown}]"


def predict(
    spec: str | os.PathLike | Spec,
    weights: str | os.PathLike,
    images: list[str | os.PathLike],
    *,
    top_k: int = 5,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """The ``top_k`` classes of every image, with their probabilities (softmax of the logits).

    Images are read as the training run read its test images (converted to the spec's
    channels, resized or centre-cropped to its size) and normalised with the checkpoint's
    mean and std; a plain state_dict records neither, so pixels stay in [0, 1] and classes
    are numbered."""
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}")
    trained = load_trained(spec, weights)
    spec_ = trained.spec
    info = trained.info
    if spec_.input.channels not in (1, 3):
        raise UsageError(
            f"spec {spec_.name!r} takes {spec_.input.channels}-channel inputs; images give 1 or 3"
        )
    mode = "L" if spec_.input.channels == 1 else "RGB"
    size = (spec_.input.height, spec_.input.width)
    transform = info.eval_transform if info is not None else "resize"
    classes = (
        info.classes if info is not None and info.classes else [str(k) for k in range(spec_.num_classes)]
    )
    where = _device(device)
    model = trained.model.to(where)
    results = []
    for start in range(0, len(images), PREDICT_BATCH):  # memory bounded by the batch, not the list
        paths = images[start : start + PREDICT_BATCH]
        batch = torch.stack([read_image(Path(path), mode, size, transform) for path in paths])
        if info is not None and info.mean is not None and info.std is not None:
            mean = torch.tensor(info.mean).reshape(1, -1, 1, 1)
            std = torch.tensor(info.std).reshape(1, -1, 1, 1)
            batch = (batch - mean) / std
        with torch.no_grad():
            probabilities = model(batch.to(where)).float().softmax(dim=1).cpu()
        values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
        results += [
            {
                "image": str(path),
                "top": [
                    {"class": classes[int(i)], "index": int(i), "probability": float(p)}
                    for p, i in zip(values[row], indices[row], strict=True)
                ],
            }
            for row, path in enumerate(paths)
        ]
    return results
