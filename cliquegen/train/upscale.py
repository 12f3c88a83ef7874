"""Upscaling images with a super-resolution model, in overlapping tiles so memory stays bounded.

:func:`upscale_tensor` runs any image-to-image module that enlarges by ``scale`` on a (C, H, W)
image.  With ``tile`` N it cuts the input into N x N tiles, runs each with ``overlap`` more
pixels of context on every side (fewer at the image's borders, which are the whole image's
borders too), keeps the tile's own part of the output and writes it in place.  A convolutional
model whose output pixel depends on input pixels at most ``overlap`` pixels away (its receptive
field's radius, in input pixels) gives the same pixels as one pass over the whole image, to
float rounding; deeper models need a larger overlap for that.  Memory then grows with the tile,
not with the image.

:func:`upscale` does it for an image: EXIF orientation applied, 8-bit output in the input's
mode.  RGB goes through an RGB model as it is; a grey image through an RGB model as three equal
channels, converted back to grey after; an RGB image through a one-channel model as its luma
(PIL's YCbCr), with the chroma enlarged by bicubic; an alpha channel is enlarged by bicubic
(MATLAB's, :func:`cliquegen.data.resize.imresize`, also tiled).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from .._io import atomic_output
from ..data.resize import imresize
from ..data.sr import open_image, upright_8bit, whole_number
from ..draw.figure import figure_format, save_figure
from ..errors import CliqueGenError, UsageError, import_extra
from ..spec.network import size_multiple
from .sr_figures import Comparison, draw_compare
from .sr_figures import compare as compare_row
from .sr_metrics import to_uint8

#: Input pixels of context around each tile by default.
OVERLAP = 32
#: Tile, context and size multiple of the bicubic passes (alpha, chroma): its kernel reaches 2
#: input pixels.
BICUBIC_RUN = (256, 3, 1)
#: Saving options per output format (others take PIL's defaults).
SAVE_OPTIONS = {"JPEG": {"quality": 95}}

Sink = Callable[[slice, slice, torch.Tensor], None]


class Bicubic(nn.Module):
    """MATLAB's bicubic enlargement as a module, so the tiler runs it like a model."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, float(self.scale))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _shape(out) -> str:
    if not isinstance(out, torch.Tensor):
        return f"a {type(out).__name__}"
    return f"a {'x'.join(map(str, out.shape))} tensor"


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each tile along an axis and (start, stop) of its input with context."""
    return [
        (start, min(start + tile, length), max(0, start - overlap), min(length, start + tile + overlap))
        for start in range(0, length, tile)
    ]


def _run_tiles(
    model: nn.Module,
    image: torch.Tensor,
    scale: int,
    tile: int | None,
    overlap: int,
    sink: Sink,
    on_tile: Callable[[int, int], None] | None,
) -> None:
    """Run ``model`` over ``image`` (C, H, W) tile by tile; hand each tile's output (C', h s, w s)
    to ``sink`` with the output rows and columns it covers."""
    _, height, width = image.shape
    tile_h = height if tile is None else min(tile, height)
    tile_w = width if tile is None else min(tile, width)
    rows, columns = _spans(height, tile_h, overlap), _spans(width, tile_w, overlap)
    total, done = len(rows) * len(columns), 0
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else image.device
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else image.dtype
    for top, bottom, in_top, in_bottom in rows:
        for left, right, in_left, in_right in columns:
            piece = image[None, :, in_top:in_bottom, in_left:in_right].to(device=device, dtype=dtype)
            out = model(piece)
            want = (scale * (in_bottom - in_top), scale * (in_right - in_left))
            if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[-2:]) != want:
                raise UsageError(
                    f"the model turns a {piece.shape[-2]}x{piece.shape[-1]} image into {_shape(out)}, "
                    f"not {want[0]}x{want[1]} images: it is not a x{scale} super-resolution model"
                )
            keep = out[0, :, (top - in_top) * scale : (bottom - in_top) * scale, (left - in_left) * scale :]
            keep = keep[:, :, : (right - left) * scale]
            sink(slice(top * scale, bottom * scale), slice(left * scale, right * scale), keep)
            done += 1
            if on_tile is not None:
                on_tile(done, total)


def upscale_tensor(
    model: nn.Module,
    image: torch.Tensor,
    scale: int,
    *,
    tile: int | None = None,
    overlap: int = OVERLAP,
    multiple: int = 1,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``model``'s output for ``image`` (C, H, W), run in tiles of ``tile`` input pixels (None:
    one pass) with ``overlap`` pixels of context; (C', H scale, W scale) on the CPU, in the
    model's dtype.

    ``multiple``: for models that take only sides divisible by it (wavelet levels); the image is
    padded at the bottom and right by repeating its edge, tiles and overlap are rounded up to
    multiples, and the output is cropped back.  ``on_tile(done, total)`` follows the progress.
    The model runs in eval mode without gradients and on its own device."""
    out: list[torch.Tensor] = []  # allocated at the first tile, which tells the channels

    def keep(rows: slice, columns: slice, pixels: torch.Tensor) -> None:
        if not out:
            size = (pixels.shape[0], image.shape[1] * scale, image.shape[2] * scale)
            out.append(torch.empty(size, dtype=pixels.dtype))
        out[0][:, rows, columns] = pixels.cpu()

    _tiled(model, image, scale, tile, overlap, multiple, keep, on_tile)
    return out[0]


def _tiled(model, image, scale, tile, overlap, multiple, sink: Sink, on_tile) -> None:
    """Check the request, pad for ``multiple``, run the tiles in inference mode, and hand
    ``sink`` each tile's output cut to the unpadded image."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
        raise UsageError("upscale: expected a float (C, H, W) image tensor")
    if min(image.shape) == 0:
        raise UsageError(f"upscale: the image is empty ({'x'.join(map(str, image.shape))})")
    whole_number(scale, "the scale")
    multiple = whole_number(multiple, "the size multiple")
    if tile is not None:
        tile = _round_up(whole_number(tile, "the tile size"), multiple)
    overlap = _round_up(whole_number(overlap, "the overlap", least=0), multiple)
    height, width = image.shape[1:]
    pad_h, pad_w = _round_up(height, multiple) - height, _round_up(width, multiple) - width
    if pad_h or pad_w:
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]

    def cut(rows: slice, columns: slice, pixels: torch.Tensor) -> None:
        rows = slice(rows.start, min(rows.stop, height * scale))
        columns = slice(columns.start, min(columns.stop, width * scale))
        sink(rows, columns, pixels[:, : rows.stop - rows.start, : columns.stop - columns.start])

    training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            _run_tiles(model, image, scale, tile, overlap, cut, on_tile)
    finally:
        model.train(training)


def _into(out: np.ndarray, channels: slice) -> Sink:
    """A sink writing tiles as 8-bit levels into ``out[:, :, channels]`` (H, W, C uint8)."""

    want = channels.stop - channels.start

    def write(rows: slice, columns: slice, pixels: torch.Tensor) -> None:
        if pixels.shape[0] != want:
            raise UsageError(f"the model gives {pixels.shape[0]}-channel images, not {want}-channel ones")
        out[rows, columns, channels] = to_uint8(pixels)

    return write


def _planes(image) -> torch.Tensor:
    """A PIL image as a (C, H, W) float32 tensor in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    array = array.reshape(array.shape[0], array.shape[1], -1)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def upscale(
    model: nn.Module,
    image,
    scale: int,
    *,
    tile: int | None = None,
    overlap: int = OVERLAP,
    channels: int = 3,
    multiple: int = 1,
    on_tile: Callable[[int, int], None] | None = None,
):
    """``image`` (a PIL image, or a path to one) enlarged ``scale`` times by ``model``, a module
    taking ``channels`` (3: RGB, 1: grey) pixels in [0, 1]: an 8-bit PIL image in the input's
    mode (L, LA, RGB or RGBA; others are converted as :func:`cliquegen.data.sr.upright_8bit`
    says), upright.  ``tile``, ``overlap``, ``multiple``, ``on_tile``: see
    :func:`upscale_tensor` (the default runs the whole image at once)."""
    image_module = import_extra("PIL.Image", "train", "upscaling images")
    if channels not in (1, 3):
        raise UsageError(f"upscale: the model must take 1 or 3 channels, not {channels}")
    image = open_image(image) if isinstance(image, (str, os.PathLike)) else upright_8bit(image)
    mode = image.mode
    colour_mode, alpha = mode.rstrip("A"), mode.endswith("A")
    width, height = image.size
    grey_out = colour_mode == "L"
    colour = image.convert(colour_mode)
    bicubic = Bicubic(scale)
    model_run = (tile, overlap, multiple)
    big = (height * scale, width * scale)
    if channels == 3:
        out = np.empty((*big, 3), np.uint8)
        _tiled(model, _planes(colour.convert("RGB")), scale, *model_run, _into(out, slice(0, 3)), on_tile)
        result = image_module.fromarray(out)
        result = result.convert("L") if grey_out else result
    else:
        planes = _planes(colour if grey_out else colour.convert("YCbCr"))
        out = np.empty((*big, planes.shape[0]), np.uint8)
        _tiled(model, planes[:1], scale, *model_run, _into(out, slice(0, 1)), on_tile)
        if not grey_out:  # the chroma by bicubic
            _tiled(bicubic, planes[1:], scale, *BICUBIC_RUN, _into(out, slice(1, 3)), None)
        bands = [image_module.fromarray(out[:, :, k]) for k in range(out.shape[2])]
        result = bands[0] if grey_out else image_module.merge("YCbCr", bands).convert("RGB")
    if alpha:
        a = np.empty((*big, 1), np.uint8)
        _tiled(bicubic, _planes(image.getchannel("A")), scale, *BICUBIC_RUN, _into(a, slice(0, 1)), None)
        result.putalpha(image_module.fromarray(a[:, :, 0]))
    return result


def save_image(image, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write a PIL image atomically in ``format`` (default: by the file's suffix); JPEG at
    quality 95."""
    image_module = import_extra("PIL.Image", "train", "writing images")
    path = Path(path)
    if format is None:
        format = image_module.registered_extensions().get(path.suffix.lower())
        if format is None:
            raise UsageError(f"{path}: cannot tell the image format from the suffix {path.suffix!r}")
    with atomic_output(path) as tmp:
        image.save(tmp, format=format, **SAVE_OPTIONS.get(format, {}))
    return path


def _pixels(image) -> np.ndarray:
    """An 8-bit PIL image's colour (alpha dropped) as (H, W) or (H, W, 3) uint8."""
    return np.asarray(image.convert("L" if image.mode in ("L", "LA") else "RGB"))


def upscale_files(
    model: nn.Module,
    spec,
    images: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    tile: int | None = None,
    hr: str | os.PathLike[str] | None = None,
    compare: str | os.PathLike[str] | None = None,
    on_error: Callable[[str, CliqueGenError], None],
    console: Console | None = None,
) -> list[tuple[str, Path]]:
    """Upscale each of ``images`` with ``model`` (the image-output ``spec``'s) into ``out_dir``,
    under the same name (so the same format), with a progress bar over the tiles.  An image that
    cannot be read or written goes to ``on_error(path, error)`` and the others are still done.
    ``compare``: also draw bicubic / model (/ the original of the same name in ``hr``) crops
    with their scores (:mod:`cliquegen.train.sr_figures`).  Returns (source, written) pairs."""
    scale, channels, multiple = spec.output.scale, spec.input.channels, size_multiple(spec)
    if channels not in (1, 3):
        raise UsageError(f"spec {spec.name!r} takes {channels}-channel images: upscale needs 1 or 3")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: a file, not a folder")
    if compare is not None:
        figure_format(compare)  # refuse a bad suffix before any work
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    rows: list[Comparison] = []
    targets: set[Path] = set()
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=console is None or not console.is_terminal,
    )  # fmt: skip
    with progress:
        task = progress.add_task("upscaling", total=len(images))
        for number, source in enumerate(images):
            name = os.fspath(source)
            progress.update(task, description=f"{number + 1}/{len(images)} {Path(name).name}")
            try:
                target = out / Path(name).name
                if target in targets:
                    raise UsageError(f"another image of this run is also named {target.name}")
                if target.exists() and target.resolve() == Path(name).resolve():
                    raise UsageError("-o would overwrite the image itself; choose another folder")
                result = upscale(
                    model, name, scale, tile=tile, channels=channels, multiple=multiple,
                    on_tile=lambda done, total, n=number: progress.update(task, completed=n + done / total),
                )  # fmt: skip
                save_image(result, target)
                if compare is not None:
                    rows.append(_comparison(name, result, scale, tile, hr))
            except CliqueGenError as error:
                on_error(name, error)
            else:
                targets.add(target)
                written.append((name, target))
            progress.update(task, completed=number + 1)
    if compare is not None and rows:
        save_figure(draw_compare(rows), compare)
    return written


def _comparison(name: str, result, scale: int, tile: int | None, hr) -> Comparison:
    """The --compare row of one image: bicubic's enlargement beside the model's (and the HR
    original of the same name in the folder ``hr``, which must be ``scale`` times the input)."""
    bicubic = upscale(Bicubic(scale), name, scale, tile=tile and BICUBIC_RUN[0], overlap=BICUBIC_RUN[1])
    original = None
    if hr is not None:
        path = Path(hr) / Path(name).name
        original = open_image(path)
        if original.size != result.size:
            raise UsageError(
                f"--hr {path} is {original.size[0]}x{original.size[1]}, but the upscaled image is "
                f"{result.size[0]}x{result.size[1]}"
            )
        original = _pixels(original)
    return compare_row(Path(name).name, _pixels(bicubic), _pixels(result), original, scale)
