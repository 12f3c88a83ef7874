"""matplotlib drawings of sweeps, training curves, weight strengths and feature maps.

Each ``draw_*`` function takes numbers computed elsewhere (:mod:`cliquegen.sweep`,
:mod:`cliquegen.analyze`) and returns a ``matplotlib.figure.Figure`` (no pyplot, no global
state); :func:`save_figure` writes it as PNG, SVG or PDF by the file's suffix, with the same
bytes for the same numbers (no dates in the metadata, a fixed SVG id salt).  matplotlib comes
with the ``plot`` extra; without it, :func:`require_matplotlib` says so (exit 2).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write
from ..errors import UsageError, import_extra

if TYPE_CHECKING:
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


def new_figure(width: float, height: float) -> Figure:
    require_matplotlib("drawing figures")
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def save_figure(
    figure: Figure, path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``figure`` atomically in the format its suffix names; return the path written
    (refused outside ``root`` when one is given, as :func:`~cliquegen._io.atomic_write`)."""
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


# --- weight strengths ---------------------------------------------------------------------------
