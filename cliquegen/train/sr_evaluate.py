"""Super-resolution evaluation the way published tables do it, and the bicubic baseline.

Every test image is read as it is (grey stays grey, an alpha channel is dropped), mod-cropped to
the scale, shrunk by MATLAB's antialiased bicubic (:func:`cliquegen.data.resize.bicubic_degrade`,
in float64, not rounded), brought back to full size by the method under test, rounded to 8 bits
and scored by :func:`cliquegen.train.sr_metrics.sr_metrics` (PSNR and SSIM on BT.601 Y with
``scale`` pixels shaved at every border, PSNR on RGB).  A set scores the mean of its images.

``folder:DIR`` names the test images: ``DIR/val/`` or ``DIR/test/`` when DIR also has ``train/``
(the images a training run on DIR held out), else every PNG and JPEG under DIR (a test set such
as Set5 is a folder of images).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..checkpoint.load import TrainedModel, load_trained
from ..data.resize import bicubic_degrade, imresize
from ..data.sr import SRImages, image_files, scored_channels, split_folder, whole_number
from ..errors import UsageError, WeightsError
from ..spec.network import ImageSpec
from ..spec.shipped import resolve_spec
from .sr_metrics import SRMetrics, mean_metrics, sr_metrics, to_uint8
from .upscale import size_multiple, upscale_tensor

#: What ``cliquegen eval --baseline`` can evaluate without a model.
BASELINES = ("bicubic",)
#: RGB -> grey as PIL converts it (ITU-R BT.601 luma weights, no offset).
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def eval_images(data: str) -> tuple[str, list[Path]]:
    """The data set's name and its test images (see the module docstring)."""
    kind, _, path = data.partition(":")
    if kind != "folder" or not path:
        raise UsageError(
            "super-resolution is evaluated on a folder of high-resolution images: "
            f"--data folder:DIR, not {data!r}"
        )
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory (folder:DIR needs a folder of PNG/JPEG images)")
    if (root / "train").is_dir() and any((root / n).is_dir() for n in ("val", "test")):
        files = split_folder(root)[1]
    else:
        files = image_files(root)
    if not files:
        raise UsageError(f"{root}: no PNG or JPEG images in this folder")
    return f"folder:{root}", files


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: ``lr`` enlarged by ``scale`` with MATLAB's bicubic."""
    return imresize(lr, float(scale))


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int, path: Path) -> SRMetrics:
    """The metrics of an upscaled image (float (C, H, W), pixels in [0, 1]) against its
    ground truth (uint8 (C, H, W)); errors name the image."""
    try:
        return sr_metrics(to_uint8(sr), hr.permute(1, 2, 0).numpy(), scale)
    except UsageError as error:
        raise UsageError(f"{path}: {error}") from None


def evaluate_bicubic(data: str, scale: int) -> dict[str, Any]:
    """The bicubic baseline on the test images of ``data``: mean PSNR (Y), SSIM (Y) and PSNR
    (RGB), and each image's, as a JSON-ready dict."""
    whole_number(scale, "the super-resolution scale", least=2)
    name, files = eval_images(data)
    images = SRImages(files, scale, channels=None, dtype=torch.float64)
    rows = []
    for index, path in enumerate(files):
        hr = images.hr(index)
        sr = bicubic_upscale(bicubic_degrade(hr.double() / 255.0, scale), scale)
        rows.append((path, tuple(hr.shape[1:]), score(sr, hr, scale, path)))
    return {"baseline": "bicubic", "data": name, "scale": scale, **set_scores(rows)}


def upscale_image(model, lr: torch.Tensor, scale: int, multiple: int, model_channels: int) -> torch.Tensor:
    """The model's enlargement of ``lr`` (C, h, w) in ``lr``'s channels: a grey image goes
    through an RGB model as three equal channels and comes back as grey (PIL's weights)."""
    if lr.shape[0] == model_channels:
        return upscale_tensor(model, lr, scale, multiple=multiple)
    rgb = upscale_tensor(model, lr.expand(model_channels, -1, -1), scale, multiple=multiple)
    weights = torch.tensor(GREY_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return (weights[:, None, None] * rgb).sum(0, keepdim=True)


def load_sr_model(spec, weights, device: str | torch.device = "cpu") -> TrainedModel:
    """The super-resolution model of ``spec`` with ``weights``; a classifier's spec or
    checkpoint is refused with a message saying so."""
    resolved = resolve_spec(spec)
    if not isinstance(resolved, ImageSpec):
        raise UsageError(
            f"spec {resolved.name!r} is a classifier: super-resolution needs a spec with an image output"
        )
    trained = load_trained(spec, weights)
    info = trained.info
    if info is not None and info.task == "classification":
        raise WeightsError(f"{weights}: these are a classifier's weights, not a super-resolution model's")
    if info is not None and info.scale is not None and info.scale != trained.spec.output.scale:
        raise WeightsError(
            f"{weights}: trained for x{info.scale}, but spec {trained.spec.name!r} upscales "
            f"x{trained.spec.output.scale}"
        )
    trained.model.to(device)
    return trained


def evaluate_sr(spec, weights, data: str, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A super-resolution model on the test images of ``data``, scored as :func:`evaluate_bicubic`
    scores bicubic (whose scores on the same images are under the key ``bicubic``): mean PSNR
    (Y), SSIM (Y) and PSNR (RGB), and each image's, as a JSON-ready dict."""
    trained = load_sr_model(spec, weights, device)
    spec = trained.spec
    scale, channels = spec.output.scale, spec.input.channels
    name, files = eval_images(data)
    images = SRImages(files, scale, channels=scored_channels(channels), dtype=torch.float64)
    multiple = size_multiple(spec)
    rows, baseline = [], []
    for index, path in enumerate(files):
        hr = images.hr(index)
        lr = bicubic_degrade(hr.double() / 255.0, scale)
        sr = upscale_image(trained.model, lr.float(), scale, multiple, channels)
        size = tuple(hr.shape[1:])
        rows.append((path, size, score(sr.float(), hr, scale, path)))
        baseline.append((path, size, score(bicubic_upscale(lr, scale), hr, scale, path)))
    return {
        "spec": spec.name,
        "weights": str(weights),
        "data": name,
        "scale": scale,
        **set_scores(rows),
        "bicubic": set_scores(baseline),
    }


def set_scores(rows: list[tuple[Path, tuple[int, int], SRMetrics]]) -> dict[str, Any]:
    """The mean scores and the per-image ones (image, mod-cropped height and width, scores) as
    JSON values: an infinite PSNR (identical images) is null."""
    mean = mean_metrics([metrics for _, _, metrics in rows])
    return {
        "images": len(rows),
        **_json_scores(mean),
        "per_image": [
            {"image": str(path), "height": size[0], "width": size[1], **_json_scores(metrics)}
            for path, size, metrics in rows
        ],
    }


def _json_scores(metrics: SRMetrics) -> dict[str, float | None]:
    values = {"psnr_y": metrics.psnr_y, "ssim_y": metrics.ssim_y, "psnr_rgb": metrics.psnr_rgb}
    return {key: value if math.isfinite(value) else None for key, value in values.items()}


def format_scores(result: dict[str, Any]) -> str:
    """One line: the mean PSNR (Y), SSIM (Y) and PSNR (RGB) of a result of this module."""

    def db(value: float | None) -> str:
        return "inf" if value is None else f"{value:.2f}"

    return (
        f"PSNR (Y) {db(result['psnr_y'])} dB  SSIM (Y) {result['ssim_y']:.4f}  "
        f"PSNR (RGB) {db(result['psnr_rgb'])} dB"
    )
