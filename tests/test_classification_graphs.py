"""Explicit graphs as blocks of classification networks: `blocks: [..., {graph: name}]`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from graph_strategies import classification_specs, reference_block
from hypothesis import given, settings
from test_graph_blocks import errors

from cliquegen import build_fx, compile_spec, load_spec
from cliquegen.analysis.features import Input, feature_maps
from cliquegen.analysis.weights import weight_matrices
from cliquegen.cli.main import main
from cliquegen.emit.build import build_source_model
from cliquegen.errors import UsageError, WeightsError
from cliquegen.interop.official import check_convertible
from cliquegen.interop.torchvision import check_torchvision_convertible
from cliquegen.spec.limits import estimate
from cliquegen.spec.template import starting_spec
from cliquegen.train.config import TrainConfig
from cliquegen.train.loop import run

ROOT = Path(__file__).resolve().parent.parent

#: A clique block, then a sparse graph block (each node reads X0 in Stage I, then two others).
SPARSE = """\
name: tiny-sparse
num_classes: 10
input: {channels: 1, height: 8, width: 8}
stem: {channels: 8}
graphs:
  sparse:
    nodes: {a: 4, b: 4, c: 4}
    unit: {kind: pre, kernel: 3}
    stages:
      - sources: {a: [x0], b: [x0, a(1)], c: [x0, b(1)]}
      - sources: {a: [b(1), c(1)], b: [a(2), c(1)], c: [a(2), b(2)]}
    output: {cat: [x0, a, b, c]}
blocks:
  - {layers: 2, channels: 4}
  - {graph: sparse}
"""

#: The graph block first, read by a transition and the head; dropout in its updates.
FIRST = (
    SPARSE.replace("name: tiny-sparse", "name: tiny-sparse-first")
    .replace(
        "  - {layers: 2, channels: 4}\n  - {graph: sparse}",
        "  - {graph: sparse}\n  - {layers: 2, channels: 4}",
    )
    .replace("unit: {kind: pre, kernel: 3}", "unit: {kind: pre, kernel: 3, dropout: 0.2}")
)


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", [SPARSE, FIRST], ids=["graph-last", "graph-first"])
def test_fx_and_source_agree_in_train_and_eval(text: str) -> None:
    spec = load_spec(text)
    fx_model = build_fx(spec)
    source_model = build_source_model(spec)
    assert list(source_model.state_dict()) == list(fx_model.state_dict())
    source_model.load_state_dict(fx_model.state_dict())
    x = torch.randn(3, 1, 8, 8)
    for train in (True, False):
        fx_model.train(train)
        source_model.train(train)
        torch.manual_seed(1)
        expected = fx_model(x)
        torch.manual_seed(1)
        torch.testing.assert_close(source_model(x), expected, rtol=0, atol=0)
    assert expected.shape == (3, 10)


@settings(max_examples=15, deadline=None)
@given(classification_specs())
def test_a_random_graph_block_is_its_equations_in_fx_and_source(data: dict) -> None:
    spec = load_spec(json.dumps(data))
    fx_model = build_fx(spec).eval()
    with torch.no_grad():  # BatchNorm statistics and scales away from their fresh 0 and 1
        for tensor in fx_model.state_dict().values():
            if tensor.is_floating_point() and tensor.dim() == 1:
                tensor.uniform_(0.5, 1.5)
    x = torch.randn(2, 1, 4, 4)
    b = next(i for i, block in enumerate(data["blocks"]) if "graph" in block) + 1
    names = [f"b{b}_x0", fx_model.program.block_outputs[b - 1]]
    values = dict(zip(names, fx_model.run_outputs(names, "values")(fx_model, x), strict=True))
    expected = reference_block(data["graphs"]["g"], fx_model.state_dict(), f"block{b}", values[names[0]])
    torch.testing.assert_close(values[names[1]], expected["out"], rtol=1e-4, atol=1e-4)
    source_model = build_source_model(spec).eval()
    source_model.load_state_dict(fx_model.state_dict())
    torch.testing.assert_close(source_model(x), fx_model(x), rtol=0, atol=0)
    assert estimate(spec).params == sum(p.numel() for p in fx_model.parameters())


def test_the_graph_output_feeds_the_transition_and_the_head() -> None:
    program = compile_spec(load_spec(FIRST)).program
    values = program.values
    out = values["b1_out"]  # cat(X0, A(2), B(2), C(2)): 8 + 3 * 4 channels
    assert out.kind == "cat" and out.shape == (20, 8, 8)
    readers = [op for op in program.ops if "b1_out" in op.inputs]
    assert {op.part for op in readers} == {"transition1", "head"}
    assert program.block_outputs[0] == "b1_out"
    assert "block1.dropout" in program.modules  # the unit's, inside the updates only
    assert not any(
        op.part == "transition1" and op.kind == "call" and "dropout" in op.attrs["module"]
        for op in program.ops
    )


def test_head_kind_last_reads_the_last_graph_block() -> None:
    text = SPARSE.replace("blocks:\n", "head: {kind: last}\nblocks:\n").replace(
        "  - {layers: 2, channels: 4}\n", "  - {layers: 2, channels: 4, feature: [x0, 2]}\n"
    )
    text = text.replace(", feature: [x0, 2]", "")
    program = compile_spec(load_spec(text)).program
    pooled = program.values["features"]
    assert pooled.kind == "global_pool" and pooled.shape == (20,)


def test_the_size_estimate_counts_graph_blocks_exactly() -> None:
    for text in (SPARSE, FIRST):
        spec = load_spec(text)
        assert estimate(spec).params == sum(p.numel() for p in build_fx(spec).parameters())


def test_the_cli_summarizes_validates_builds_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, SPARSE)
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["summary", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["name"] == "tiny-sparse"
    assert summary["params"] == sum(p.numel() for p in build_fx(load_spec(SPARSE)).parameters())
    assert main(["build", str(path), "-o", str(tmp_path / "out")]) == 0
    module = (tmp_path / "out" / "tiny_sparse.py").read_text()
    assert "Block 2: graph sparse: a, b, c of 4, 2 stages, BN -> ReLU -> 3x3 conv" in module
    assert "# B(2) = g(W12*A(2) + W32*C(1))" in module
    for view, extra in (("network", []), ("network", ["--depth", "1"]), ("block", ["--block", "2"])):
        out = tmp_path / f"{view}{len(extra)}.dot"
        assert main(["render", str(path), "--view", view, *extra, "--format", "dot", "-o", str(out)]) == 0
        assert "digraph" in out.read_text()
    network = (tmp_path / "network0.dot").read_text()
    assert "graph sparse: 3 nodes of 4 ch" in network
    assert "output cat(X0, A(2), B(2), C(2))" in network


# --- the clique shorthand written as graphs ---------------------------------------------------

DIGITS = (ROOT / "specs/digits/cliquenet-digits.yaml").read_text()

#: cliquenet-digits' blocks as explicit graphs: the complete clique's equations, pre-activation
#: units, one W_ij per edge shared by both stages.  A graph's output is one value that the
#: transition and the head both read, whereas the digits spec hands Stage II on (transit: 2)
#: and pools X0 + Stage II (feature: [x0, 2]): the shorthand below transits [x0, 2] too, where
#: both read the same.  Dropout 0: a clique's transition reuses its block's dropout, a graph
#: block's transition has none.
CLIQUE_GRAPH = """\
graphs:
  digits-clique:
    nodes: {x1: 24, x2: 24, x3: 24}
    unit: {kind: pre, kernel: 3}
    weights: shared
    stages:
      - sources: {x1: [x0], x2: [x0, x1(1)], x3: [x0, x1(1), x2(1)]}
      - sources: {x1: [x2(1), x3(1)], x2: [x1(2), x3(1)], x3: [x1(2), x2(2)]}
    output: {cat: [x0, x1, x2, x3]}
"""


def digits_pair(graphs: str, blocks: str) -> tuple[str, str]:
    shorthand = DIGITS.replace("dropout: 0.1", "dropout: 0.0").replace(
        "transit: 2                        # Stage II goes to the next block", "transit: [x0, 2]"
    )
    assert shorthand != DIGITS and "transit: [x0, 2]" in shorthand
    start = shorthand.index("blocks:")
    end = shorthand.index("transition:")
    written = shorthand[:start] + graphs + blocks + shorthand[end:]
    return shorthand, written


@pytest.mark.parametrize(
    "graphs",
    [
        CLIQUE_GRAPH,
        "graphs:\n  digits-clique:\n    clique: {layers: 3, channels: 24, stages: 2}\n"
        "    output: {cat: [x0, x1, x2, x3]}\n",
    ],
    ids=["nodes", "clique"],
)
def test_digits_written_as_graphs_computes_the_shorthand(graphs: str) -> None:
    shorthand, written = digits_pair(
        graphs, "blocks:\n  - {graph: digits-clique}\n  - {graph: digits-clique}\n"
    )
    a, b = build_fx(load_spec(shorthand)), build_fx(load_spec(written))
    assert sorted(a.state_dict()) == sorted(b.state_dict())  # the same names: w0_1, bn1_s1, ...
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 1, 8, 8)
    for train in (True, False):
        a.train(train)
        b.train(train)
        torch.testing.assert_close(b(x), a(x), rtol=1e-5, atol=1e-6)


def test_a_graph_block_beside_a_clique_block_computes_the_shorthand() -> None:
    shorthand, written = digits_pair(
        CLIQUE_GRAPH, "blocks:\n  - {layers: 3, channels: 24}\n  - {graph: digits-clique}\n"
    )
    a, b = build_fx(load_spec(shorthand)), build_fx(load_spec(written))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 8, 8)
    a.eval()
    b.eval()
    torch.testing.assert_close(b(x), a(x), rtol=1e-5, atol=1e-6)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{graph: sparse}",
            "{graph: spares}",
            "s.yaml:15:13: error: unknown graph `spares` (the spec's graphs: `sparse`)",
        ),
        (
            "{graph: sparse}",
            "{graph: sparse, layers: 3}",
            "s.yaml:15:21: error: `layers` is a key of clique blocks; a graph block (`graph:`) takes its "
            "nodes, unit and stages from its graph and no `defaults`: remove `layers`, or `graph`",
        ),
        (
            "{graph: sparse}",
            "{graph: sparse, dropout: 0.2}",
            "s.yaml:15:21: error: `dropout` is a key of clique blocks; a graph block (`graph:`) takes its "
            "nodes, unit and stages from its graph and no `defaults`: remove `dropout`, or `graph`",
        ),
        (
            "    nodes: {a: 4, b: 4, c: 4}\n",
            "    nodes: {a: 4, b: 4, c: 4}\n    input: split\n",
            "s.yaml:16:13: error: graph `sparse` splits its input into 4 + 4 + 4 = 12 channels, "
            "but it gets 8",
        ),
        (
            "    output: {cat: [x0, a, b, c]}",
            "    output: {cat: [x0, a, b, c], residual: true}",
            "s.yaml:15:13: error: graph `sparse` adds its input to its output (residual), but the output "
            "has 20 channels and the input 8",
        ),
        (
            "    unit: {kind: pre, kernel: 3}",
            "    unit: {kind: post, kernel: 3}",
            "s.yaml:8:18: error: block 2 of a classification network uses graph `sparse`, whose units are "
            "post-activation; its blocks use BN -> ReLU -> conv units (kind: pre)",
        ),
        (
            "    output: {cat: [x0, a, b, c]}",
            "    output: {cat: [x0]}",
            "s.yaml:12:19: error: the output reads only x0; a block's output needs a node's value",
        ),
    ],
    ids=[
        "unknown-graph",
        "layers-beside-graph",
        "dropout-beside-graph",
        "split-width",
        "residual",
        "post",
        "only-x0",
    ],
)
def test_graph_block_errors_are_located(old: str, new: str, message: str) -> None:
    assert old in SPARSE
    assert message in errors(SPARSE.replace(old, new))


def test_a_clique_block_still_asks_for_its_keys() -> None:
    found = errors(SPARSE.replace("{layers: 2, channels: 4}", "{layers: 2}"))
    assert found == ["s.yaml:14:5: error: missing required key `channels` (e.g. `channels: 36`)"]


# --- what refuses graph blocks ---------------------------------------------------------------


def test_foreign_layouts_refuse_graph_blocks() -> None:
    spec = load_spec(SPARSE)
    with pytest.raises(WeightsError, match="block 2: graph `sparse`, an explicit graph; their blocks"):
        check_convertible(spec)
    with pytest.raises(WeightsError, match="block 2: graph `sparse`, an explicit graph; torchvision"):
        check_torchvision_convertible(spec)


def test_analysis_refuses_graph_blocks_and_reads_clique_blocks() -> None:
    spec = load_spec(SPARSE)
    compiled = compile_spec(spec)
    model = build_fx(spec)
    with pytest.raises(UsageError, match="block 2 of tiny-sparse is an explicit graph"):
        weight_matrices(compiled, model.state_dict())
    assert len(weight_matrices(compiled, model.state_dict(), block=1)) == 1
    image = Input(torch.zeros(1, 8, 8), "zeros", None)
    with pytest.raises(UsageError, match="block 2 of tiny-sparse is graph `sparse`, an explicit graph"):
        feature_maps(spec, model, image, block=2)


def test_new_like_copies_a_spec_with_graphs_as_written() -> None:
    spec = load_spec(SPARSE, path="tiny-sparse.yaml")
    text = starting_spec("my-sparse", like=spec, like_label="tiny-sparse.yaml")
    assert "name: my-sparse" in text and "      - sources: {a: [x0], b: [x0, a(1)], c: [x0, b(1)]}" in text
    assert load_spec(text).graphs.keys() == {"sparse"}
    with pytest.raises(UsageError, match="a spec with graphs is copied as written"):
        starting_spec("my-sparse", like=spec, num_classes=3)


def test_set_blocks_star_sets_the_clique_blocks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, SPARSE)
    assert main(["summary", str(path), "--json", "--set", "blocks.*.layers=3"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny-sparse"
    assert main(["summary", str(path), "--set", "blocks.2.layers=3"]) == 2
    assert "`layers` is a key of clique blocks" in capsys.readouterr().err
    only_graph = SPARSE.replace("  - {layers: 2, channels: 4}\n", "")
    assert main(["summary", str(write(tmp_path, only_graph, "g.yaml")), "--set", "blocks.*.layers=3"]) == 2
    assert "every block is a graph block (`graph:`); `blocks.*.layers` sets a key of clique blocks" in (
        capsys.readouterr().err
    )


def test_a_short_training_run(tmp_path: Path) -> None:
    path = write(tmp_path, SPARSE)
    result = run(TrainConfig(spec=str(path), data="digits", epochs=1, subset=64, out=str(tmp_path / "run")))
    assert result.metrics["epochs_done"] == 1
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
