"""The matplotlib plumbing every figure of the package is drawn with.

A figure is a ``matplotlib.figure.Figure`` made by :func:`new_figure` (no pyplot, no global
state) and drawn inside :func:`figure_style`; :func:`whole_ticks` and :func:`log_scale` set up
its axes, and :func:`save_figure` writes it as PNG, SVG or PDF by the file's suffix, with the
same bytes for the same numbers (no dates in the metadata, a fixed SVG id salt).  The figures
themselves live beside the numbers they draw (:mod:`cliquegen.train.figures`,
:mod:`cliquegen.analysis.figures`).  matplotlib comes with the ``plot`` extra; without it,
:func:`require_matplotlib` says so (exit 2), and nothing here imports it before a figure is drawn.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write
from ..errors import UsageError, import_extra

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure


FORMATS = ("png", "svg", "pdf")
DPI = 150
_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}
#: matplotlib settings every figure is drawn with (a fixed SVG id salt keeps files reproducible).
STYLE = {"svg.hashsalt": "cliquegen", "font.size": 9, "axes.titlesize": 9, "figure.titlesize": 11}


def require_matplotlib(purpose: str) -> None:
    import_extra("matplotlib", "plot", purpose)


def figure_format(path: str | os.PathLike[str]) -> str:
    """``png``, ``svg`` or ``pdf`` from the file's suffix; anything else is a usage error."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UsageError(f"{path}: a figure is written as .png, .svg or .pdf, not {suffix or 'no suffix'!r}")
    return suffix


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """matplotlib's settings (:data:`STYLE`) while a figure is drawn."""
    require_matplotlib("drawing figures")
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float) -> Figure:
    require_matplotlib("drawing figures")
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def whole_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (epochs)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def plain_number(value: float, _position: int | None = None) -> str:
    """A tick label as people write the number: ``0.05``, ``2``, ``2.28``."""
    return f"{value:.4g}"


def log_scale(axes: Axes, values: Sequence[float]) -> None:
    """A log-scale y axis for ``values`` whose labels read as plain numbers (``0.5``, ``2``,
    ``2.28``; never ``2.28 x 10^0``): ticks at 1, 2 and 5 times powers of ten (powers of ten
    alone past three decades), at round steps where the values span less than that."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_yscale("log")
    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0,) if decades > 3 else (1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(plain_number))
    axes.yaxis.set_minor_formatter(NullFormatter())


def save_figure(
    figure: Figure, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``figure`` atomically in the format its suffix names; return the path written.

    ``root``: refuse a path that does not resolve inside this folder (see :func:`atomic_write`)."""
    import matplotlib
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fmt = figure_format(path)
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        if isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine):
            # lay out once and keep it: every later save draws the same positions
            figure.draw_without_rendering()
            figure.set_layout_engine("none")
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return atomic_write(path, buffer.getvalue(), root=root)
