"""Real photographs that install with scikit-learn and scikit-image, as a super-resolution folder.

``python -m cliquegen.data.samples DIR`` (or :func:`write_sample_photos`) writes PNG copies of

- ``DIR/train/``: scikit-learn's two sample photographs (``china``, ``flower``; 427x640);
- ``DIR/val/``: four of scikit-image's (``astronaut`` 512x512, ``chelsea`` 300x451, ``coffee``
  400x600, ``rocket`` 427x640), held out,

so ``cliquegen train SPEC --data folder:DIR`` trains on the first two and validates on the
others, offline.  Nothing is downloaded: both packages ship these files.  With ``--scale S``
it also writes the held-out photographs as an upscaler's inputs and references:

- ``DIR/xS/hr/``: each mod-cropped to a multiple of S;
- ``DIR/xS/lr/``: those shrunk by S with MATLAB's bicubic, rounded to 8 bits,

for ``cliquegen upscale SPEC --weights W DIR/xS/lr/*.png -o OUT --compare FIG --hr DIR/xS/hr``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import torch

from .._io import atomic_write_all
from ..errors import CliqueGenError, import_extra
from .resize import bicubic_degrade, modcrop
from .sr import whole_number

#: scikit-learn's ``load_sample_image`` names, written to ``train/``.
TRAIN_PHOTOS = ("china.jpg", "flower.jpg")
#: ``skimage.data`` functions, written to ``val/``.
HELD_OUT_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _8bit(image: torch.Tensor):
    """(C, H, W) in [0, 1] -> (H, W, C) uint8, rounded half up."""
    return (image.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()


def _png(pixels) -> bytes:
    image = import_extra("PIL.Image", "train", "writing the sample photographs").fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_sample_photos(root: str | os.PathLike[str], scale: int | None = None) -> list[Path]:
    """Write the photographs under ``root`` (``train/``, ``val/``, and ``x{scale}/hr/``,
    ``x{scale}/lr/`` with a ``scale``); return the files written.  All or none are written;
    existing files of the same names are replaced."""
    if scale is not None:
        whole_number(scale, "the scale", least=2)
    datasets = import_extra("sklearn.datasets", "train", "the sample photographs")
    skimage_data = import_extra("skimage.data", "train", "the sample photographs")
    root = Path(root)
    files = [
        (root / "train" / f"{Path(name).stem}.png", _png(datasets.load_sample_image(name)))
        for name in TRAIN_PHOTOS
    ]
    for name in HELD_OUT_PHOTOS:
        pixels = getattr(skimage_data, name)()
        files.append((root / "val" / f"{name}.png", _png(pixels)))
        if scale is not None:
            hr = modcrop(torch.from_numpy(pixels).permute(2, 0, 1).double() / 255.0, scale)
            files.append((root / f"x{scale}" / "hr" / f"{name}.png", _png(_8bit(hr))))
            files.append((root / f"x{scale}" / "lr" / f"{name}.png", _png(_8bit(bicubic_degrade(hr, scale)))))
    for folder in {path.parent for path, _ in files}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CliqueGenError(f"cannot make {folder}: {error.strerror or error}") from None
    return atomic_write_all(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cliquegen.data.samples",
        description="write real photographs for super-resolution: DIR/train/ and DIR/val/",
    )
    parser.add_argument("dir", metavar="DIR")
    parser.add_argument(
        "--scale",
        type=int,
        metavar="S",
        help="also DIR/xS/hr/ and DIR/xS/lr/: the held-out ones and their LR",
    )
    args = parser.parse_args(argv)
    try:
        written = write_sample_photos(args.dir, args.scale)
    except CliqueGenError as error:
        print(f"cliquegen: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} images under {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
