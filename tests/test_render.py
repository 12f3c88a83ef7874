"""Rendering: golden DOT files, the drawings against the UpdateGraph, SVG/PNG through `dot`."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import specs

import cliquegen
from cliquegen import UsageError, compile_spec
from cliquegen.cli import main
from cliquegen.ir import weight_label
from cliquegen.render import MISSING_DOT, draw, render, roman, weight_text
from cliquegen.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXPECTED = DATA / "expected" / "render"
K36 = ROOT / "specs" / "cifar10" / "cliquenet-k36-t12.yaml"
CUSTOM_ORDER = DATA / "custom-order-3124.yaml"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's `dot` is not installed")

#: golden file -> (spec, view, options)
GOLDEN = {
    "cliquenet-k36-t12-block.dot": (K36, "block", {}),
    "cliquenet-k36-t12-schedule.dot": (K36, "schedule", {}),
    "cliquenet-x3-schedule.dot": (ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", "schedule", {}),
    "custom-order-3124-schedule.dot": (CUSTOM_ORDER, "schedule", {}),
    "cliquenet-k36-t12-ac-network.dot": (ROOT / "specs/cifar10/cliquenet-k36-t12-ac.yaml", "network", {}),
    "custom-order-3124-network-depth1.dot": (CUSTOM_ORDER, "network", {"depth": 1}),
}

PLAIN_DIGITS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
EDGE = re.compile(r"^\s*(\w+) -> (\w+)", re.MULTILINE)
NODE = re.compile(r"^\s*(?!graph |node |edge )(\w+) \[", re.MULTILINE)


def dot_structure(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Node ids (of the statements that declare them) and edges read back from DOT text."""
    return NODE.findall(text), EDGE.findall(text)


def labelled_edge(attrs: dict[str, str]) -> bool:
    return any(key in attrs for key in ("label", "headlabel", "taillabel"))


@pytest.mark.parametrize("golden", sorted(GOLDEN))
def test_dot_matches_the_golden_file(golden: str) -> None:
    spec, view, options = GOLDEN[golden]
    got = render(spec, view, **options)
    path = EXPECTED / golden
    if os.environ.get("CLIQUEGEN_ACCEPT") == "1":
        path.write_text(got, encoding="utf-8")
    expected = path.read_text(encoding="utf-8") if path.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True), got.splitlines(keepends=True), str(path), "rendered"
        )
    )
    assert not diff, f"DOT differs from {path} (CLIQUEGEN_ACCEPT=1 rewrites it):\n{diff}"


def test_dot_does_not_depend_on_the_hash_seed() -> None:
    code = f"import cliquegen, sys; sys.stdout.write(cliquegen.render({str(K36)!r}, 'schedule'))"
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, encoding="utf-8", check=True
        )
        assert out.stdout == (EXPECTED / "cliquenet-k36-t12-schedule.dot").read_text(encoding="utf-8")


def test_k36_t12_edge_counts() -> None:
    block = draw(K36, "block")
    from_x0 = [e for e in block.edges if e[0] == "b1_x0"]
    assert (len(block.edges), len(from_x0)) == (16, 4)
    assert len(block.nodes) == 5 and not any(dst == "b1_x0" for _, dst, _ in block.edges)
    schedule = draw(K36, "schedule", block=2)
    assert len(schedule.edges) == 22 and len(schedule.nodes) == 9
    labels = [attrs["label"] for _, _, attrs in schedule.edges]
    assert labels.count("<W₁₃>") == 2  # W13 is drawn in Stage I and in Stage II


def _block_terms(graph, b: int) -> set[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    return {(u, v) for u, v in graph.edges if v[0] == b}


@given(specs(), st.data())
def test_schedule_is_the_update_graph_of_the_block(spec: Spec, data: st.DataObject) -> None:
    compiled = compile_spec(spec)
    graph = compiled.graph
    b = data.draw(st.integers(0, len(spec.blocks) - 1))
    drawing = draw(compiled, "schedule", block=b + 1)
    names = {graph.nodes[n]["name"]: n for n in graph.nodes if n[0] == b}
    expected_edges = {(graph.nodes[u]["name"], graph.nodes[v]["name"]) for u, v in _block_terms(graph, b)}

    # the structure, and the same structure read back from the DOT text
    nodes, edges = dot_structure(drawing.source)
    assert sorted(nodes) == sorted(drawing.nodes) == sorted(names)
    assert len(edges) == len(drawing.edges) == len(expected_edges)
    assert set(edges) == {(u, v) for u, v, _ in drawing.edges} == expected_edges

    # execution order, stage clusters, and W_ij drawn the same way in every stage
    steps = [graph.nodes[names[n]]["step"] for n in drawing.nodes]
    assert steps == sorted(steps)
    look: dict[tuple[int, int], tuple[str, str]] = {}
    for u, v, attrs in drawing.edges:
        weight = graph.edges[names[u], names[v]]["weight"]
        assert look.setdefault(weight, (attrs["color"], attrs["style"])) == (attrs["color"], attrs["style"])
        if "label" in attrs:
            assert attrs["label"] == f"<{weight_text(*weight)}>"
            assert weight_text(*weight).translate(PLAIN_DIGITS) == weight_label(*weight)
    for name, cluster in drawing.placement.items():
        stage = names[name][2]
        assert cluster == (None if stage == 0 else f"cluster_b{b + 1}_stage{stage}")
        if cluster is not None:
            assert drawing.clusters[cluster][1]["label"].startswith(f"Stage {roman(stage)}")


@given(specs(max_blocks=2))
def test_block_view_draws_every_used_weight_once(spec: Spec) -> None:
    compiled = compile_spec(spec)
    graph = compiled.graph
    for b, info in enumerate(graph.graph["blocks"]):
        drawing = draw(compiled, "block", block=b + 1)
        used = {graph.edges[e]["weight"] for e in _block_terms(graph, b)}
        assert {(u, v) for u, v, _ in drawing.edges} == {
            (f"b{b + 1}_x{i}", f"b{b + 1}_x{j}") for i, j in used
        }
        assert len(drawing.nodes) == info["config"].layers + 1
        labelled = [attrs for _, _, attrs in drawing.edges if labelled_edge(attrs)]
        assert len(labelled) == (len(used) if info["config"].layers <= 6 else 0)


@given(specs(), st.integers(0, 1))
def test_network_view_connects_every_part(spec: Spec, depth: int) -> None:
    compiled = compile_spec(spec)
    drawing = draw(compiled, "network", depth=depth)
    nodes, edges = dot_structure(drawing.source)
    assert sorted(nodes) == sorted(drawing.nodes)
    assert set(edges) == {(u, v) for u, v, _ in drawing.edges}
    n = len(spec.blocks)
    heads = [f"head{b}" for b in range(1, n + 1)] if spec.head.kind == "multiscale" else [f"head{n}"]
    for part in ["x", "stem", "classifier"] + heads:
        assert part in drawing.nodes
    assert sorted(node for node in drawing.nodes if node.startswith("head")) == sorted(heads)
    assert [f"transition{t}" in drawing.nodes for t in range(1, n)] == [True] * (n - 1)
    attention = [
        drawing.nodes[f"transition{t}"].get("color") == "#d55e00" for t in range(1, n)
    ]  # attention is marked
    assert attention == [spec.transition.attention] * (n - 1)
    if depth:
        tensors = {data["name"] for _, data in compiled.graph.nodes(data=True)}
        assert tensors <= set(drawing.nodes)
    else:
        assert [f"block{b}" for b in range(1, n + 1)] == [x for x in drawing.nodes if x.startswith("block")]


@needs_dot
def test_svg_parses_and_names_every_node() -> None:
    svg = render(K36, "schedule", format="svg")
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    titles = {
        g.find("svg:title", ns).text
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "node"
    }
    assert titles == set(draw(K36, "schedule").nodes)
    edges = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "edge"]
    assert len(edges) == 22


@needs_dot
def test_cli_writes_svg_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svg, png = tmp_path / "block.svg", tmp_path / "network.png"
    assert main(["render", str(K36), "--view", "block", "--format", "svg", "-o", str(svg)]) == 0
    assert main(["render", "cliquenet-k36-t12", "--view", "network", "-o", str(png)]) == 0  # from the suffix
    titles = {el.text for el in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}title")}
    assert {"b1_x0", "b1_x1", "b1_x4"} <= titles
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.svg", "network.png"]  # no temp files left


def test_cli_dot_to_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(CUSTOM_ORDER), "--view", "schedule"]) == 0
    assert capsys.readouterr().out == (EXPECTED / "custom-order-3124-schedule.dot").read_text(
        encoding="utf-8"
    )
    out = tmp_path / "k36.dot"
    out.write_text("old", encoding="utf-8")
    assert main(["render", str(K36), "--view", "block", "--format", "dot", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == (EXPECTED / "cliquenet-k36-t12-block.dot").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--view", "block", "--block", "4"], "block 4 does not exist: cliquenet-k36-t12 has 3 blocks"),
        (["--view", "schedule", "--block", "0"], "block 0 does not exist"),
        (["--view", "network", "--depth", "-1"], "depth must be 0"),
        (["--format", "png"], "PNG output is binary"),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "cliquenet-k36-t12", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


def test_missing_dot_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    with pytest.raises(UsageError, match=re.escape(MISSING_DOT)):
        cliquegen.render(K36, "block", format="svg")
    out = tmp_path / "block.png"
    assert main(["render", str(K36), "--format", "png", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert MISSING_DOT in captured.err and "Traceback" not in captured.err
    assert not out.exists()
    assert cliquegen.render(K36, "block").startswith("digraph")  # DOT needs no `dot`


def test_unknown_view_and_format() -> None:
    with pytest.raises(UsageError, match="unknown view"):
        draw(K36, "clique")
    with pytest.raises(UsageError, match="unknown format"):
        render(K36, format="pdf")


def test_large_blocks_drop_edge_labels() -> None:
    drawing = draw("cliquenet-k12-t36", "block")  # 12 layers: 12 + 132 weights
    assert len(drawing.edges) == 144
    assert not any(labelled_edge(attrs) for _, _, attrs in drawing.edges)
