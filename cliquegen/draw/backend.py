"""The graphviz backend: a :class:`Drawing` (nodes, edges, clusters in a deterministic order),
its DOT text, and the pictures graphviz's ``dot`` draws from it."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from ..errors import UsageError

FORMATS = ("dot", "svg", "png", "pdf", "jpg")
#: File suffixes (in any case) and the format each names.
SUFFIXES = {
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
    ".jpg": "jpg",
    ".jpeg": "jpg",
}

MISSING_DOT = "graphviz's `dot` is not installed: install Debian's graphviz, or use --format dot"


def output_format(path: str | os.PathLike | None, format: str | None = None) -> str:
    """The format to write: ``format``, else the one ``path``'s suffix names (any case), else DOT.

    A suffix that names no format, or another format than ``format``, is refused: the file
    would not hold what its name says."""
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    suffix = Path(path).suffix if path is not None else ""
    named = SUFFIXES.get(suffix.lower())
    if suffix and named is None and format is None:
        raise UsageError(
            f"cannot tell a drawing format from the suffix {suffix!r} of {os.fspath(path)!r}: "
            f"name the file .{', .'.join(s.lstrip('.') for s in SUFFIXES)}, or give --format "
            f"{'|'.join(FORMATS)}"
        )
    if format is not None and named is not None and named != format:
        raise UsageError(
            f"--format {format} does not match the suffix of {os.fspath(path)!r}, which names {named}"
        )
    return format or named or "dot"


@dataclass
class Drawing:
    """Nodes, edges and clusters of one picture, in the order they are written.

    ``edges`` are what the picture shows; ``hidden`` are invisible edges that only order
    and align the nodes; ``ranks`` are (cluster, nodes) drawn side by side."""

    name: str
    attrs: dict[str, str]
    node_attrs: dict[str, str] = field(default_factory=dict)
    edge_attrs: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    hidden: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, tuple[str | None, dict[str, str]]] = field(default_factory=dict)
    placement: dict[str, str | None] = field(default_factory=dict)  # node -> cluster
    ranks: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    def node(self, node_id: str, cluster: str | None = None, **attrs: str) -> None:
        if node_id in self.nodes:
            raise AssertionError(f"node {node_id!r} is drawn twice")
        self.nodes[node_id] = attrs
        self.placement[node_id] = cluster

    def _check(self, src: str, dst: str) -> None:
        for end in (src, dst):
            if end not in self.nodes:
                raise AssertionError(f"edge {src!r} -> {dst!r} names the undrawn node {end!r}")

    def edge(self, src: str, dst: str, **attrs: str) -> None:
        self._check(src, dst)
        self.edges.append((src, dst, attrs))

    def hide(self, src: str, dst: str, **attrs: str) -> None:
        """An invisible edge that only places ``dst`` after (below or right of) ``src``."""
        self._check(src, dst)
        self.hidden.append((src, dst, attrs))

    def cluster(self, cluster_id: str, parent: str | None = None, **attrs: str) -> str:
        self.clusters[f"cluster_{cluster_id}"] = (parent, attrs)
        return f"cluster_{cluster_id}"

    def digraph(self) -> graphviz.Digraph:
        dot = graphviz.Digraph(
            self.name, graph_attr=self.attrs, node_attr=self.node_attrs, edge_attr=self.edge_attrs
        )

        def fill(graph: graphviz.Digraph, cluster: str | None) -> None:
            for child, (parent, attrs) in self.clusters.items():
                if parent == cluster:
                    with graph.subgraph(name=child) as sub:
                        sub.attr(**attrs)
                        fill(sub, child)
            for node_id, attrs in self.nodes.items():
                if self.placement[node_id] == cluster:
                    graph.node(node_id, **attrs)
            for parent, rank in self.ranks:
                if parent == cluster:
                    with graph.subgraph() as same:
                        same.attr(rank="same")
                        for node_id in rank:
                            same.node(node_id)

        fill(dot, None)
        for src, dst, attrs in self.hidden:  # first: dot orders nodes by the edges it reads first
            dot.edge(src, dst, style="invis", **attrs)
        for src, dst, attrs in self.edges:
            dot.edge(src, dst, **attrs)
        return dot

    @property
    def source(self) -> str:
        """The DOT text."""
        return self.digraph().source

    def pipe(self, format: str) -> str | bytes:
        """The picture drawn by graphviz: SVG text, or the bytes of a PNG, PDF or JPEG."""
        try:
            return self.digraph().pipe(
                format=format, encoding="utf-8" if format == "svg" else None, quiet=True
            )
        except graphviz.ExecutableNotFound:
            raise UsageError(MISSING_DOT) from None
        except graphviz.CalledProcessError as error:
            raise UsageError(_dot_failure(self.name, error)) from None
        except OSError as error:
            raise UsageError(f"cannot run graphviz's dot: {error.strerror or error}") from None


def _dot_failure(name: str, error: graphviz.CalledProcessError) -> str:
    """One line saying how graphviz failed on a drawing."""
    if error.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-error.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-error.returncode}"
    else:
        how = f"exited with status {error.returncode}"
    stderr = (
        error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else error.stderr or ""
    )
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = f" ({said[-1][:200].encode('unicode_escape').decode('ascii')})" if said else ""
    return f"graphviz's dot {how} drawing {name}{detail}; --format dot writes the DOT text instead"
