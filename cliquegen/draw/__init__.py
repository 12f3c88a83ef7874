"""Drawings: the graphviz views of a compiled spec (block, schedule, network) and the matplotlib
plumbing every figure of the package is drawn with.
"""

# The views of explicit graph blocks and image networks register themselves with the renderer.
from . import graph_views as _graph_views  # noqa: F401, E402
