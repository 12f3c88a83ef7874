"""Real photographs that install with scikit-learn and scikit-image, as a super-resolution folder.

``python -m cliquegen.data.samples DIR`` (or :func:`write_sample_photos`) writes PNG copies of

- ``DIR/train/``: scikit-learn's two sample photographs (``china``, ``flower``; 427x640);
- ``DIR/val/``: four of scikit-image's (``astronaut`` 512x512, ``chelsea`` 300x451, ``coffee``
  400x600, ``rocket`` 427x640), held out,

so ``cliquegen train SPEC --data folder:DIR`` trains on the first two and validates on the
others, offline.  Nothing is downloaded: both packages ship these files.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from .._io import atomic_write_all
from ..errors import CliqueGenError, import_extra

#: scikit-learn's ``load_sample_image`` names, written to ``train/``.
TRAIN_PHOTOS = ("china.jpg", "flower.jpg")
#: ``skimage.data`` functions, written to ``val/``.
HELD_OUT_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _png(pixels) -> bytes:
    image = import_extra("PIL.Image", "train", "writing the sample photographs").fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_sample_photos(root: str | os.PathLike[str]) -> list[Path]:
    """Write the photographs under ``root`` (``train/``, ``val/``); return the files written.
    All or none are written; existing files of the same names are replaced."""
    datasets = import_extra("sklearn.datasets", "train", "the sample photographs")
    skimage_data = import_extra("skimage.data", "train", "the sample photographs")
    root = Path(root)
    files = [
        (root / "train" / f"{Path(name).stem}.png", _png(datasets.load_sample_image(name)))
        for name in TRAIN_PHOTOS
    ]
    files += [(root / "val" / f"{name}.png", _png(getattr(skimage_data, name)())) for name in HELD_OUT_PHOTOS]
    for folder in {path.parent for path, _ in files}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CliqueGenError(f"cannot make {folder}: {error.strerror or error}") from None
    return atomic_write_all(files)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m cliquegen.data.samples DIR", file=sys.stderr)
        return 2
    try:
        written = write_sample_photos(args[0])
    except CliqueGenError as error:
        print(f"cliquegen: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} photographs under {args[0]} (train/: 2, val/: {len(HELD_OUT_PHOTOS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
