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
from cliquegen.cli.main import main
from cliquegen.compiler.ir import graph_blocks, weight_label
from cliquegen.compiler.naming import roman
from cliquegen.draw.views import EDGE_LIMIT, LABEL_LIMIT, MISSING_DOT, draw, render, weight_text
from cliquegen.spec.model import Spec

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXPECTED = DATA / "expected" / "render"
K36 = ROOT / "specs" / "cifar10" / "cliquenet-k36-t12.yaml"
CUSTOM_ORDER = DATA / "custom-order-3124.yaml"
THREE_STAGE = DATA / "three-stage-bottleneck.yaml"
S3 = ROOT / "specs" / "imagenet" / "cliquenet-s3.yaml"
UNTIED = ROOT / "specs" / "cifar10" / "ablation" / "cliquenet-k36-t12-untied.yaml"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's `dot` is not installed")

#: golden file -> (spec, view, options)
GOLDEN = {
    "cliquenet-k36-t12-block.dot": (K36, "block", {}),
    "cliquenet-k36-t12-schedule.dot": (K36, "schedule", {}),
    "cliquenet-x3-schedule.dot": (ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", "schedule", {}),
    "custom-order-3124-schedule.dot": (CUSTOM_ORDER, "schedule", {}),
    "cliquenet-k36-t12-ac-network.dot": (ROOT / "specs/cifar10/cliquenet-k36-t12-ac.yaml", "network", {}),
    "three-stage-bottleneck-network.dot": (THREE_STAGE, "network", {}),
    "custom-order-3124-network-depth1.dot": (CUSTOM_ORDER, "network", {"depth": 1}),
    "cliquenet-x3-block.dot": (ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", "block", {}),
    "cliquenet-s3-block.dot": (S3, "block", {}),
    "cliquenet-s3-schedule.dot": (S3, "schedule", {}),
    "three-stage-bottleneck-schedule.dot": (THREE_STAGE, "schedule", {}),
    "three-stage-bottleneck-network-depth1.dot": (THREE_STAGE, "network", {"depth": 1}),
    "densenet-121-schedule.dot": (ROOT / "specs/densenet/densenet-121.yaml", "schedule", {}),
    "densenet-121-network.dot": (ROOT / "specs/densenet/densenet-121.yaml", "network", {}),
    "cliquenet-k36-t12-untied-schedule.dot": (UNTIED, "schedule", {}),
    "thirteen-layers-block.dot": (DATA / "thirteen-layers.yaml", "block", {}),
    "thirteen-layers-schedule.dot": (DATA / "thirteen-layers.yaml", "schedule", {}),
}

PLAIN_DIGITS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
SUPERSCRIPT = str.maketrans("0123456789()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁽⁾")
EDGE = re.compile(r"^\s*(\w+) -> (\w+)\b(?! \[style=invis)", re.MULTILINE)
NODE = re.compile(r"^\s*(?!graph |node |edge )(\w+) \[", re.MULTILINE)


def dot_structure(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Node ids (of the statements that declare them) and edges read back from DOT text."""
    return NODE.findall(text), EDGE.findall(text)


def labelled_edge(attrs: dict[str, str]) -> bool:
    return any(key in attrs for key in ("label", "xlabel", "headlabel", "taillabel"))


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
    terms = [e for e in block.edges if not e[1].endswith(("_feature", "_transit"))]
    from_x0 = [e for e in terms if e[0] == "b1_x0"]
    assert (len(terms), len(from_x0)) == (16, 4)
    assert len(block.nodes) == 5 + 2 and not any(dst == "b1_x0" for _, dst, _ in block.edges)
    # feature [x0, 2]: X0 and the 4 layers; transit 2: the 4 layers
    assert len(block.edges) - len(terms) == 5 + 4
    schedule = draw(K36, "schedule", block=2)
    terms = [e for e in schedule.edges if not e[1].endswith(("_feature", "_transit"))]
    assert len(terms) == 22 and len(schedule.nodes) == 9 + 2 + 2  # tensors, stage titles, outputs
    labels = [attrs["xlabel"] for _, _, attrs in terms]
    assert labels.count("<W₁₃>") == 2  # W13 is drawn in Stage I and in Stage II


def _block_terms(graph, b: int) -> set[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    return {(u, v) for u, v in graph.edges if v[0] == b}


def _outputs_of(spec: Spec, info: dict, b: int) -> dict[str, list[tuple[int, int, int]]]:
    """The tensors each output of block ``b`` concatenates, repeats included (a feature can
    name one stage twice over: [2, 3] with partial: 0).  Head kind `last` reads only the last
    block's feature, and the last block transits nothing."""
    outputs = {}
    if spec.head.kind == "multiscale" or b + 1 == len(spec.blocks):
        outputs["feature"] = info.feature
    if info.transit:
        outputs["transit"] = info.transit
    return outputs


def _label(spec: Spec, b: int, weight: tuple[int, int], stage: int) -> str:
    """W₁₃, or W₁₃⁽²⁾ where each stage has its own W_ij."""
    shared = spec.resolved_blocks()[b].share_weights
    return f"<{weight_text(*weight)}{'' if shared else f'({stage})'.translate(SUPERSCRIPT)}>"


@given(specs(), st.data())
def test_schedule_is_the_update_graph_of_the_block(spec: Spec, data: st.DataObject) -> None:
    compiled = compile_spec(spec)
    graph = compiled.graph
    b = data.draw(st.integers(0, len(spec.blocks) - 1))
    info = graph_blocks(graph)[b]
    drawing = draw(compiled, "schedule", block=b + 1)
    names = {graph.nodes[n]["name"]: n for n in graph.nodes if n[0] == b}
    expected_edges = {(graph.nodes[u]["name"], graph.nodes[v]["name"]) for u, v in _block_terms(graph, b)}
    outputs = {f"b{b + 1}_{kind}": tensors for kind, tensors in _outputs_of(spec, info, b).items()}
    titles = {f"b{b + 1}_stage{stage}": stage for _, _, stage in names.values() if stage}

    # the structure, and the same structure read back from the DOT text (invisible edges aside)
    nodes, edges = dot_structure(drawing.source)
    assert sorted(nodes) == sorted(drawing.nodes) == sorted([*names, *outputs, *titles])
    terms = [(u, v) for u, v, _ in drawing.edges if v not in outputs]
    assert len(terms) == len(expected_edges) and set(terms) == expected_edges
    assert set(edges) == {(u, v) for u, v, _ in drawing.edges}

    # what leaves the block: each output node fed by exactly the tensors it concatenates
    for output, tensors in outputs.items():
        fed = sorted(names[u] for u, v, _ in drawing.edges if v == output)
        assert fed == sorted(tensors)

    # execution order, stage clusters, and W_ij drawn the same way in every stage
    steps = [graph.nodes[names[n]]["step"] for n in drawing.nodes if n in names]
    assert steps == sorted(steps)
    look: dict[tuple[int, int], tuple[str, str]] = {}
    for u, v, attrs in drawing.edges:
        if v in outputs:
            continue
        weight = graph.edges[names[u], names[v]]["weight"]
        assert look.setdefault(weight, (attrs["color"], attrs["style"])) == (attrs["color"], attrs["style"])
        if "xlabel" in attrs:  # W_ij, with the stage where each stage has its own
            assert attrs["xlabel"] == _label(spec, b, weight, names[v][2])
            assert weight_text(*weight).translate(PLAIN_DIGITS) == weight_label(*weight)
    for name, cluster in drawing.placement.items():
        stage = names[name][2] if name in names else titles.get(name, 0)
        assert cluster == (None if stage == 0 else f"cluster_b{b + 1}_stage{stage}")
    for title, stage in titles.items():
        assert drawing.nodes[title]["label"].startswith(f"<Stage {roman(stage)}")


@given(specs(max_blocks=2))
def test_block_view_draws_every_used_weight_once(spec: Spec) -> None:
    compiled = compile_spec(spec)
    graph = compiled.graph
    for b, info in enumerate(graph_blocks(graph)):
        drawing = draw(compiled, "block", block=b + 1)
        used = {graph.edges[e]["weight"] for e in _block_terms(graph, b)}
        outputs = {f"b{b + 1}_{kind}": tensors for kind, tensors in _outputs_of(spec, info, b).items()}
        assert {(u, v) for u, v, _ in drawing.edges if v not in outputs} == {
            (f"b{b + 1}_x{i}", f"b{b + 1}_x{j}") for i, j in used
        }
        for output, tensors in outputs.items():  # one edge per layer whose value leaves the block
            assert sorted(u for u, v, _ in drawing.edges if v == output) == sorted(
                f"b{b + 1}_x{layer}" for _, layer, _ in tensors
            )
        assert len(drawing.nodes) == info.config.layers + 1 + len(outputs)
        labelled = [attrs for _, _, attrs in drawing.edges if labelled_edge(attrs)]
        assert len(labelled) == (len(used) if info.config.layers <= LABEL_LIMIT else 0)


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
    assert len(edges) == 22 + 5 + 4  # the terms, then into feature and transit; no invisible edge


SVG = "{http://www.w3.org/2000/svg}"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _box(group: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the shapes in an SVG group, in SVG units (y grows downward)."""
    xs: list[float] = []
    ys: list[float] = []
    for shape in group.iter():
        if shape.tag == f"{SVG}ellipse":
            cx, cy, rx, ry = (float(shape.get(k)) for k in ("cx", "cy", "rx", "ry"))
            xs += [cx - rx, cx + rx]
            ys += [cy - ry, cy + ry]
        elif shape.tag in (f"{SVG}polygon", f"{SVG}path"):
            numbers = [float(n) for n in NUMBER.findall(shape.get("points") or shape.get("d"))]
            xs += numbers[0::2]
            ys += numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def svg_layout(svg: str) -> tuple[dict[str, tuple[float, float, float, float]], list[tuple[str, tuple]]]:
    """The box of every drawn node with a shape, by node id, and the edge labels with their
    approximate boxes (text from its start, 0.6 em a character, one em high above the baseline)."""
    root = ET.fromstring(svg)
    nodes, labels = {}, []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node" and any(
            shape.tag in (f"{SVG}ellipse", f"{SVG}polygon", f"{SVG}path") for shape in group.iter()
        ):
            nodes[group.find(f"{SVG}title").text] = _box(group)
        elif group.get("class") == "edge":
            for text in group.findall(f"{SVG}text"):
                x, y, size = float(text.get("x")), float(text.get("y")), float(text.get("font-size"))
                width = 0.6 * size * len(text.text)
                left = x - width / 2 if text.get("text-anchor") == "middle" else x
                labels.append((text.text, (left, y - size, left + width, y)))
    return nodes, labels


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _covers(label: tuple[float, float, float, float], node: tuple[float, float, float, float]) -> bool:
    """Whether a label's box reaches more than 1 pt into a node: its ellipse, where its box is
    a circle's (the update nodes), else its box."""
    if abs((node[2] - node[0]) - (node[3] - node[1])) > 0.5:
        return _overlap(label, (node[0] + 1, node[1] + 1, node[2] - 1, node[3] - 1))
    (cx, cy), radius = _centre(node), (node[2] - node[0]) / 2
    nearest_x = min(max(cx, label[0]), label[2])
    nearest_y = min(max(cy, label[1]), label[3])
    return (nearest_x - cx) ** 2 + (nearest_y - cy) ** 2 < (radius - 1) ** 2


SCHEDULES = [
    (K36, 1),
    (K36, 3),
    (CUSTOM_ORDER, 1),
    (THREE_STAGE, 1),
    (S3, 2),
    (UNTIED, 1),
    (ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", 1),
    (ROOT / "specs/densenet/densenet-121.yaml", 1),
]


@needs_dot
@pytest.mark.parametrize(("path", "block"), SCHEDULES, ids=[f"{p.stem}-{b}" for p, b in SCHEDULES])
def test_schedule_svg_has_a_column_per_layer_in_execution_order(path: Path, block: int) -> None:
    """In the drawn SVG: each stage one row, its updates left to right in execution order, X_j(k)
    straight under X_j(k-1); X0 above, the outputs below; no node over another, no W_ij label
    over a node."""
    compiled = compile_spec(cliquegen.load_spec(path))
    config = graph_blocks(compiled.graph)[block - 1].config
    nodes, labels = svg_layout(render(compiled, "schedule", block=block, format="svg"))
    tag = f"b{block}"
    rows: dict[int, list[tuple[float, float, int]]] = {}
    for name, box in nodes.items():
        if match := re.fullmatch(rf"{tag}_x(\d+)_s(\d+)", name):
            x, y = _centre(box)
            rows.setdefault(int(match[2]), []).append((x, y, int(match[1])))
    assert sorted(rows) == list(range(1, config.stages + 1))
    column: dict[int, float] = {}
    above = None
    for stage, row in sorted(rows.items()):
        layers = [layer for _, _, layer in sorted(row)]
        assert layers == list(config.order[: len(layers)]), f"stage {stage}: {layers}"
        ys = {round(y, 1) for _, y, _ in row}
        assert len(ys) == 1, f"stage {stage} is not one row: {ys}"
        y = ys.pop()
        assert above is None or y > above + 30, f"stage {stage} is not below stage {stage - 1}"
        for x, _, layer in row:
            assert abs(column.setdefault(layer, x) - x) < 0.5, f"X{layer}({stage}) left its column"
        above = y
    top = min(y for row in rows.values() for _, y, _ in row)
    assert _centre(nodes[f"{tag}_x0"])[1] < top
    for output in ("feature", "transit"):
        if f"{tag}_{output}" in nodes:
            assert nodes[f"{tag}_{output}"][1] > above
    boxes = sorted(nodes.items())
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            assert not _overlap(box_a, box_b), f"{a} and {b} overlap"
    if config.layers <= LABEL_LIMIT:
        assert len(labels) == len([e for e in compiled.graph.edges if e[1][0] == block - 1])
    for text, box in labels:
        for name, node in nodes.items():
            assert not _covers(box, node), f"the label {text} is over {name}"


@needs_dot
@pytest.mark.parametrize("path", [K36, CUSTOM_ORDER, THREE_STAGE])
def test_expanded_network_rows_are_in_execution_order(path: Path) -> None:
    compiled = compile_spec(cliquegen.load_spec(path))
    nodes, _ = svg_layout(render(compiled, "network", depth=1, format="svg"))
    rows: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for name, box in nodes.items():
        if match := re.fullmatch(r"b(\d+)_x(\d+)_s(\d+)", name):
            rows.setdefault((int(match[1]), int(match[3])), []).append((_centre(box)[0], int(match[2])))
    blocks = graph_blocks(compiled.graph)
    assert len(rows) == sum(info.config.stages for info in blocks)
    for (b, stage), row in rows.items():
        order = blocks[b - 1].config.order
        assert [layer for _, layer in sorted(row)] == list(order[: len(row)]), f"block {b} stage {stage}"


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
        (["--format", "pdf"], "PDF output is binary"),
        (["--view", "block", "--depth", "1"], "--depth applies to the network view only"),
        (["--view", "schedule", "--depth", "0"], "--depth applies to the network view only"),
        (["--view", "network", "--block", "2"], "--block applies to the block and schedule views"),
        (["--view", "network", "--depth", "2"], "depth must be 0"),
        (["-o", "k36.gif"], "cannot tell a drawing format from the suffix '.gif'"),
        (["--format", "svg", "-o", "k36.PNG"], "--format svg does not match the suffix"),
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
        render(K36, format="gif")


@pytest.mark.parametrize("spec", ["thirteen-layers.yaml", "forty-layers.yaml"])
def test_large_blocks_are_matrices(spec: str) -> None:
    """Past EDGE_LIMIT layers the block and schedule views draw one cell per weight or term."""
    compiled = compile_spec(cliquegen.load_spec(DATA / spec))
    graph = compiled.graph
    n = graph_blocks(graph)[0].config.layers
    assert n > EDGE_LIMIT
    cell = re.compile(r'<TD WIDTH="12" HEIGHT="12" FIXEDSIZE="TRUE" BGCOLOR="(#\w+)"')
    block = draw(compiled, "block")
    assert list(block.nodes) == ["b1_matrix"] and not block.edges
    fills = cell.findall(block.nodes["b1_matrix"]["label"])
    assert len(fills) == len({graph.edges[e]["weight"] for e in _block_terms(graph, 0)})
    schedule = draw(compiled, "schedule")
    fills = cell.findall(schedule.nodes["b1_matrix"]["label"])
    terms = [f for f in fills if f != "#eeeeee"]  # the grey diagonal: a layer never reads itself
    assert len(terms) == len(_block_terms(graph, 0))
    assert f"{len(terms):,} terms as a matrix" in schedule.attrs["label"]
    assert f"more than {EDGE_LIMIT} layers" in schedule.attrs["label"]


def test_bottleneck_is_drawn_in_every_update() -> None:
    s3 = compile_spec(cliquegen.load_spec(ROOT / "specs/imagenet/cliquenet-s3.yaml"))
    schedule = draw(s3, "schedule")
    updates = [attrs for node, attrs in schedule.nodes.items() if re.fullmatch(r"b1_x\d+_s\d+", node)]
    assert len(updates) == 12 and all("1x1&#8594;3x3" in attrs["label"] for attrs in updates)
    assert "the 1x1 W_ij to 40 ch, BN-ReLU, the layer's 3x3 conv" in schedule.attrs["label"]
    block = draw(s3, "block")
    assert sum("1x1&#8594;3x3" in attrs["label"] for attrs in block.nodes.values()) == 6
    plain = draw(K36, "schedule")
    assert not any("1x1" in attrs.get("label", "") for attrs in plain.nodes.values())


def test_partial_stage_feeds_the_newest_values_out() -> None:
    """CliqueNet-X3: Stage II runs X1..X3, so X4 and X5 leave the block from Stage I."""
    drawing = draw(ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", "schedule")
    fed = sorted(u for u, v, _ in drawing.edges if v == "b1_transit")
    assert fed == ["b1_x1_s2", "b1_x2_s2", "b1_x3_s2", "b1_x4_s1", "b1_x5_s1"]
    assert "X₄⁽¹⁾ X₅⁽¹⁾" in drawing.nodes["b1_transit"]["label"]
    last = draw(ROOT / "specs/cifar10/ablation/cliquenet-x3.yaml", "schedule", block=3)
    assert "b3_transit" not in last.nodes and "b3_feature" in last.nodes  # the last block transits nothing


def test_densenet_draws_a_dense_block() -> None:
    """Stage I only, the transit of the whole concatenation [x0, 1], one head (kind last)."""
    densenet = compile_spec(cliquegen.load_spec(ROOT / "specs/densenet/densenet-121.yaml"))
    schedule = draw(densenet, "schedule")
    assert [n for n in schedule.nodes if "_stage" in n] == ["b1_stage1"]
    fed = sorted(u for u, v, _ in schedule.edges if v == "b1_transit")
    assert fed == sorted(["b1_x0"] + [f"b1_x{j}_s1" for j in range(1, 7)])
    assert "b1_feature" not in schedule.nodes  # the head reads only the last block
    assert "a dense block" in schedule.attrs["label"] and "128 ch (4k)" in schedule.attrs["label"]
    terms = [e for e in schedule.edges if e[1] != "b1_transit"]
    assert len(terms) == 6 + 15 and all(attrs["style"] == "solid" for _, _, attrs in terms)
    last = draw(densenet, "block", block=4)  # 16 layers: a matrix, with the feature column only
    assert (
        ">feature<" in last.nodes["b4_matrix"]["label"]
        and ">transit<" not in last.nodes["b4_matrix"]["label"]
    )
    network = draw(densenet, "network")
    assert [n for n in network.nodes if n.startswith("head")] == ["head4"]
    assert "bottleneck 1x1 to 128 ch" in network.nodes["block1"]["label"]


def test_untied_weights_are_named_per_stage() -> None:
    drawing = draw(UNTIED, "schedule")
    labels = [attrs["xlabel"] for _, v, attrs in drawing.edges if "xlabel" in attrs]
    assert "<W₁₃⁽¹⁾>" in labels and "<W₁₃⁽²⁾>" in labels and "<W₁₃>" not in labels
    assert "every stage has its own W_ij" in drawing.attrs["label"]
    block = draw(UNTIED, "block")
    assert block.edges[0][2]["tooltip"].endswith("one per stage: W01(1)")
    assert any(attrs["tooltip"].endswith("one per stage: W13(1), W13(2)") for _, _, attrs in block.edges)


@needs_dot
@pytest.mark.parametrize(
    ("name", "magic"),
    [
        ("k36.pdf", b"%PDF"),
        ("k36.JPG", b"\xff\xd8\xff"),
        ("k36.jpeg", b"\xff\xd8\xff"),
        ("k36.SVG", b"<?xml"),
    ],
)
def test_cli_writes_the_format_the_suffix_names(
    name: str, magic: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    assert main(["render", str(K36), "--view", "schedule", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("kill -SEGV $$", "graphviz's dot was killed by SIGSEGV"),
        ("echo 'Error: trouble in init_rank' >&2; exit 1", "dot exited with status 1 drawing"),
    ],
)
def test_dot_failing_is_one_line_and_no_file(
    script: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat > /dev/null\n{script}\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "k36.svg"
    assert main(["render", str(K36), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert says in err and "--format dot writes the DOT text" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_big_drawings_stay_small_for_the_layout_engine() -> None:
    """What graphviz must lay out stays a small multiple of k36-t12's 4-layer block: a 40-layer
    block is drawn as matrices (no edges at all), and a 6-layer 3-stage schedule has one edge
    per term of its equations.  (Before the matrices and the row layout, these drawings took
    25x and 200x as long; the time itself is a benchmark's business, not a test's.)"""
    small, three, forty = (
        compile_spec(cliquegen.load_spec(path)) for path in (K36, THREE_STAGE, DATA / "forty-layers.yaml")
    )
    edges = render(small, "block").count("->")
    assert edges > 0
    assert render(three, "schedule").count("->") <= 3 * edges
    for view in ("block", "schedule"):
        dot = render(forty, view)
        assert "->" not in dot and "<TABLE" in dot.upper(), view
