"""Explicit graph blocks: every update of random graphs against a direct computation, the
shorthands against their written-out expansions, FX == source, and the spec errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from graph_strategies import image_specs, reference_block
from hypothesis import given, settings
from torch import fx

import cliquegen
from cliquegen import build_fx, compile_spec, load_spec, summarize
from cliquegen.compiler.graph_blocks import clique_block, explicit_block
from cliquegen.draw.views import draw
from cliquegen.emit.build import build_source_model, generate_source
from cliquegen.errors import SpecError
from cliquegen.spec.limits import estimate


class _Recorder(fx.Interpreter):
    """Runs a GraphModule and keeps every node's value by name."""

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def fx_values(model: fx.GraphModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
    recorder = _Recorder(model)
    recorder.values = {}
    with torch.no_grad():
        recorder.run(x)
    return recorder.values


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Random biases, PReLU slopes and BatchNorm statistics, so that none of them is a no-op."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith(".weight") or ".act" in name:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.1)
            elif tensor.is_floating_point() and "bn" in name:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)


@settings(max_examples=25, deadline=None)
@given(image_specs())
def test_every_update_of_a_random_graph_is_its_equation(data: dict) -> None:
    spec = load_spec(json.dumps(data))
    model = build_fx(spec).eval()
    randomize(model, 1)
    x = torch.randn(2, 2, 6, 4)
    values = fx_values(model, x)
    params = model.state_dict()
    graph = data["graphs"]["g"]
    block_input = values["inp"]
    for b in range(1, data["network"][1]["blocks"] + 1):
        expected = reference_block(graph, params, f"block{b}", block_input)
        for ref, value in expected.items():
            if ref in ("x0", "out") or ref.endswith("(0)"):
                continue
            name, stage = ref.rstrip(")").split("(")
            # float rounding only (eval-mode BatchNorm runs folded into one pass over the inputs)
            torch.testing.assert_close(
                values[f"b{b}_{name}_s{stage}"], value, rtol=1e-4, atol=1e-4, msg=f"block {b}: {ref}"
            )
        block_output = values[model.program.block_outputs[b - 1]]
        torch.testing.assert_close(block_output, expected["out"], rtol=1e-4, atol=1e-4)
        block_input = block_output
    # the counts the limits check computes without building agree with the built model
    cost, compiled = estimate(spec), compile_spec(spec)
    assert cost.params == summarize(compiled).params == sum(p.numel() for p in model.parameters())
    assert cost.edges == compiled.graph.number_of_edges()
    assert cost.updates == sum(1 for node in compiled.graph.nodes if node[2] > 0)
    widest = [math.prod(op.shape) for op in compiled.program.ops]
    for op in compiled.program.ops:  # a pre-activation update's concatenated input is no op of its own
        if op.kind == "update":
            channels = sum(compiled.program.values[name].shape[0] for name in op.inputs)
            widest.append(channels * op.shape[1] * op.shape[2])
            if op.attrs["bottleneck_bn"]:
                wide = compiled.program.modules[op.attrs["bottleneck_bn"]].args["num_features"]
                widest.append(wide * op.shape[1] * op.shape[2])
    assert cost.activation_bytes == 4 * max(widest)


@settings(max_examples=10, deadline=None)
@given(image_specs())
def test_random_graph_source_equals_fx(data: dict) -> None:
    spec = load_spec(json.dumps(data))
    torch.manual_seed(0)
    fx_model = build_fx(spec)
    torch.manual_seed(0)
    source = build_source_model(spec)
    assert list(fx_model.state_dict()) == list(source.state_dict())
    randomize(fx_model, 2)
    source.load_state_dict(fx_model.state_dict())
    x = torch.randn(1, 2, 6, 4)
    with torch.no_grad():
        torch.testing.assert_close(fx_model.eval()(x), source.eval()(x), rtol=0, atol=0)


# --- the shorthands are their expansions ------------------------------------------------------


def written_out_clique(layers: int, stages: int, order: list[int], partial: int | None) -> list[dict]:
    """CliqueNet's stage equations as explicit `stages:` (written here independently of the
    compiler): Stage I reads x0 and the layers updated before; a later stage reads, for every
    other layer, its value of this stage if updated before, else its newest one."""
    newest: dict[int, int] = {}
    written = []
    for stage in range(1, stages + 1):
        run = order[:partial] if stage == stages and partial is not None else order
        sources = {}
        for j in run:
            refs = ["x0"] if stage == 1 else []
            refs += [f"x{i}({newest[i]})" for i in sorted(newest) if i != j]
            sources[f"x{j}"] = refs
            newest[j] = stage
        if run:  # a partial stage of no update is no stage of the written-out graph
            written.append({"order": [f"x{j}" for j in run], "sources": sources})
    return written


def image_around(graph: dict, c0: int) -> dict:
    return {
        "name": "wrapped",
        "input": {"channels": 3, "height": 4, "width": 4},
        "graphs": {"g": graph},
        "network": [
            {"op": "conv", "name": "inp", "out": c0, "kernel": 1},
            {"op": "group", "graph": "g", "blocks": 1},
            {"op": "conv", "name": "out", "out": 3, "kernel": 1},
        ],
    }


@pytest.mark.parametrize(
    ("layers", "stages", "order", "partial"),
    [
        (4, 2, [1, 2, 3, 4], None),
        (3, 3, [3, 1, 2], 2),
        (5, 1, [1, 2, 3, 4, 5], None),
        (4, 2, [2, 4, 1, 3], 0),
    ],
)
@pytest.mark.parametrize("weights", ["shared", "untied"])
def test_the_clique_shorthand_is_its_written_out_graph(layers, stages, order, partial, weights) -> None:
    unit = {"kind": "pre", "kernel": 3}
    clique = {"layers": layers, "channels": 2, "stages": stages, "order": order, "partial": partial}
    short = image_around({"clique": clique, "unit": unit, "weights": weights}, 5)
    nodes = {f"x{j}": 2 for j in range(1, layers + 1)}
    stages_written = written_out_clique(layers, stages, order, partial)
    long = image_around({"nodes": nodes, "unit": unit, "weights": weights, "stages": stages_written}, 5)
    a, b = compile_spec(load_spec(json.dumps(short))), compile_spec(load_spec(json.dumps(long)))
    assert a.program.modules == b.program.modules
    assert [(op.name, op.kind, op.inputs, op.attrs) for op in a.program.ops] == [
        (op.name, op.kind, op.inputs, op.attrs) for op in b.program.ops
    ]


def test_a_classification_block_expands_to_the_clique_graph_of_the_spec_language() -> None:
    """`blocks: [{layers, channels, schedule}]` and `graphs: {g: {clique: ...}}` expand to the
    same updates, sources in the same order, and the same unit."""
    spec = load_spec(
        "name: c\nnum_classes: 3\nblocks:\n"
        "  - {layers: 4, channels: 2, feature: [x0, 3],\n"
        "     schedule: {stages: 3, order: [2, 4, 1, 3], partial: 2}}\n"
    )
    config = spec.resolved_blocks()[0]
    shorthand = clique_block(config, 64, feature=True, transit=False)
    data = image_around(
        {"clique": {"layers": 4, "channels": 2, "stages": 3, "order": [2, 4, 1, 3], "partial": 2}}, 64
    )
    graph = load_spec(json.dumps(data)).resolved_graphs()["g"]
    explicit = explicit_block(graph, 0, 64)
    assert shorthand.updates == explicit.updates
    assert shorthand.unit == explicit.unit and shorthand.weights == explicit.weights
    assert [node.name for node in shorthand.nodes] == [node.name for node in explicit.nodes]


def test_a_densenet_block_is_the_one_stage_clique() -> None:
    spec = load_spec(
        "name: d\nnum_classes: 3\nhead: {kind: last}\ndefaults: {feature: [x0, 1], transit: [x0, 1]}\n"
        "blocks:\n  - {layers: 3, channels: 2, schedule: {stages: 1}}\n"
    )
    block = clique_block(spec.resolved_blocks()[0], 64, feature=True, transit=False)
    assert [(u.node, u.stage, u.sources) for u in block.updates] == [
        (1, 1, ((0, 0),)),
        (2, 1, ((0, 0), (1, 1))),
        (3, 1, ((0, 0), (1, 1), (2, 1))),
    ]
    assert block.feature == ((0, 0), (1, 1), (2, 1), (3, 1))


# --- what an explicit graph's generated source says ------------------------------------------


def test_each_update_shows_its_equation_in_the_generated_source() -> None:
    text = generate_source(ROOT / "specs/sr/pdasr-clique.yaml")
    assert "# LH(1) = g(F(LL(1), LH(0)))" in text
    assert "# LL(2) = g(F(LL(1), LH(2), HL(2), HH(2)))" in text
    # the 15 blocks run one method of their graph, each with its own modules
    assert "lh_s1_in = torch.cat([ll_s1, lh_s0], 1)  # (B, 64, 72, 72)" in text
    assert text.count("def subband_clique_block(self, block: nn.Module, x: torch.Tensor)") == 1
    assert "b15_out = self.subband_clique_block(self.block15, b14_out)" in text
    assert "Runs blocks 1 to 15, each with its" in text
    shared = image_around(
        {
            "nodes": {"a": 2, "b": 2},
            "unit": {"kind": "post", "act": {"leaky_relu": 0.1}, "bias": True},
            "stages": [{"sources": {"a": ["x0"], "b": ["x0", "a(1)"]}}],
        },
        3,
    )
    text = generate_source(json.dumps(shared))
    assert "# B(1) = g(W02*X0 + W12*A(1))" in text
    assert "F.conv2d(b1_b_s1_in, torch.cat([block.w0_2, block.w1_2], 1), block.bias2, 1, 1)" in text


# --- errors ----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PDASR = (ROOT / "specs/sr/pdasr-clique.yaml").read_text()


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(text, path="s.yaml")
    return [str(d) for d in info.value.diagnostics]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "hl: [ll(1), hl(0)]",
            "hl: [ll(1), xx(0)]",
            "s.yaml:20:23: error: unknown node `xx`; the nodes are ll, lh, hl, hh",
        ),
        (
            "lh: [ll(1), lh(0)]",
            "lh: [hh(1), lh(0)]",
            "s.yaml:19:16: error: `hh(1)` is not computed yet: stage 1 updates hh after lh",
        ),
        (
            "hh: [hh(1)]",
            "hh: [hh(2)]",
            "s.yaml:23:16: error: `hh(2)` is the value this update computes; its previous value is hh(1)",
        ),
        (
            "lh: [lh(1), hh(2)]",
            "lh: [lh(1), hh(3)]",
            "s.yaml:25:23: error: `hh(3)` is not computed yet: stage 3 comes after stage 2",
        ),
        (
            "hl: [ll(1), hl(0)]",
            "hl: [ll(1), hl]",
            "s.yaml:20:23: error: write the stage of `hl`: hl(0) for its input slice, hl(k) after stage k",
        ),
        (
            "{ll: 32, lh: 32, hl: 32, hh: 32}",
            "{ll: 32, lh: 32, hl: 32, hh: 16}",
            "s.yaml:35:12: error: graph `subband-clique` splits its input into 32 + 32 + 32 + 16 = 112 "
            "channels, but it gets 128",
        ),
        (
            "output: {cat: [ll, lh, hl, hh], res_scale: 1, residual: true}",
            "output: {cat: [ll, lh, hl], res_scale: 1, residual: true}",
            "s.yaml:35:12: error: graph `subband-clique` adds its input to its output (residual), but the "
            "output has 96 channels and the input 128",
        ),
        (
            "{op: add, skip: f0}",
            "{op: add, skip: f1}",
            "s.yaml:38:21: error: no earlier op saves `f1` (saved so far: `f0`; `input` is the network's "
            "input)",
        ),
        (
            "input: {channels: 3, height: 144, width: 144}",
            "input: {channels: 3, height: 143, width: 144}",
            "s.yaml:31:5: error: the Haar DWT needs an even height and width, but its input is 143x144",
        ),
        (
            "output: {kind: image, scale: 1}",
            "output: {kind: image, scale: 2}",
            "s.yaml:8:30: error: the network gives 3 x 144 x 144 from a 144x144 input, not the 3 x 288 x 288 "
            "of output scale 2",
        ),
        (
            "unit: {kind: post, kernel: 3, bias: true, act: prelu}",
            "unit: {kind: pre, kernel: 3, bias: true, act: prelu}",
            "s.yaml:14:51: error: pre-activation units (BN -> ReLU -> conv) use relu; use kind: post",
        ),
        (
            "graph: subband-clique\n",
            "graph: subband\n",
            "s.yaml:35:12: error: unknown graph `subband` (the spec's graphs: `subband-clique`)",
        ),
    ],
)
def test_spec_errors_are_located(old: str, new: str, message: str) -> None:
    assert old in PDASR
    assert message in errors(PDASR.replace(old, new))


def test_per_edge_weights_read_each_node_once() -> None:
    text = PDASR.replace("weights: per-update", "weights: shared").replace(
        "hh: [ll(1), lh(1), hl(1), hh(0)]", "hh: [ll(1), ll(0), hl(1), hh(0)]"
    )
    found = errors(text)
    assert any("with shared weights (one W_ij per edge) an update reads each node once" in e for e in found)


def test_an_odd_size_at_run_time_is_a_clear_error() -> None:
    model = build_fx(load_spec(ROOT / "specs/sr/pdasr-clique-light.yaml"))
    with pytest.raises(ValueError, match="the Haar DWT needs an even height and width, got 7x6"):
        model(torch.zeros(1, 3, 7, 6))


# --- drawings ----------------------------------------------------------------------------------


def test_the_views_of_an_explicit_graph_show_its_edges_self_reads_and_residual() -> None:
    spec = load_spec(ROOT / "specs/sr/pdasr-clique-light.yaml")
    block = draw(spec, "block")
    edges = {(src, dst) for src, dst, _ in block.edges}
    assert ("b1_x0", "b1_node_lh") in edges and ("b1_node_ll", "b1_node_hh") in edges
    assert ("b1_node_lh", "b1_node_hl") not in edges  # LH and HL never read each other
    residual = [attrs for src, dst, attrs in block.edges if (src, dst) == ("b1_x0", "b1_out")]
    assert residual and "residual" in residual[0]["label"]
    schedule = draw(load_spec(ROOT / "specs/sr/pdasr-clique.yaml"), "schedule", block=2)
    styles = {(src, dst): attrs.get("style") for src, dst, attrs in schedule.edges}
    assert styles["b2_ll_s1", "b2_lh_s1"] == "solid"  # this stage's value
    assert styles["b2_lh_s1", "b2_lh_s2"] == "dashed"  # its own, of the stage before
    assert styles["b2_lh_s0", "b2_lh_s1"] == "dotted"  # its slice of the input
    assert schedule.nodes["b2_hh_s2"]["tooltip"] == "HH(2) = g(F(HH(1)))"


def test_the_network_view_draws_the_wavelets_the_fusion_and_the_skip() -> None:
    drawing = draw(load_spec(ROOT / "specs/sr/srcliquenet-x4.yaml"), "network")
    assert {"embed", "widen", "block1", "block4", "fuse", "add1", "idwt1", "idwt2", "to_rgb"} <= set(
        drawing.nodes
    )
    edges = {(src, dst): attrs for src, dst, attrs in drawing.edges}
    assert all((f"block{b}", "fuse") in edges for b in range(1, 5))
    assert edges["embed", "add1"]["style"] == "dashed"  # the global skip f0
    expanded = draw(load_spec(ROOT / "specs/sr/srcliquenet-x2-tiny.yaml"), "network", depth=1)
    assert "b3_ll_s2" in expanded.nodes and "b3_ll_s0" in expanded.nodes


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: widen,", "name: dwt1,", "`dwt1` is a name the generated code uses itself; choose another"),
        ("name: widen,", "name: shallow_act,", None),
        ("name: to_bands,", "name: fuse_in,", "`fuse_in` names the value `fuse_in`, which the op at"),
        ("name: to_bands,", "name: shallow,", "`shallow` names the value `shallow`, which the op at"),
    ],
)
def test_names_of_ops_are_checked_against_every_value_they_name(old, new, message) -> None:
    text = PDASR.replace(old, new, 1)
    if message is None:  # shallow has no activation, so shallow_act is free
        load_spec(text)
        return
    assert any(message in error for error in errors(text))


def test_a_default_mean_shift_name_is_numbered() -> None:
    spec = load_spec(PDASR.replace("name: sub_mean, ", "").replace("name: add_mean, ", ""))
    assert [path for path, decl in compile_spec(spec).program.modules.items() if decl.kind == "constant"] == [
        "mean_shift1",
        "mean_shift2",
    ]


def test_an_image_network_of_pre_activation_units_runs_from_source_in_a_given_dtype() -> None:
    """Generated source of an image network copies every runtime function its updates call
    (recomputation included); device and dtype apply, timm's global_pool does not (no head)."""
    graph = {"clique": {"layers": 3, "channels": 2, "stages": 2}, "unit": {"kind": "pre", "dropout": 0.1}}
    spec = load_spec(json.dumps(image_around(graph, 4)))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    outputs = []
    for emit in ("fx", "source"):
        torch.manual_seed(0)
        model = cliquegen.create_model(spec, emit=emit, dtype=torch.float64)
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        model.set_grad_checkpointing(True)
        model(x.requires_grad_()).sum().backward()  # the updates recompute in backward
        model.eval()
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-12)
    with pytest.raises(cliquegen.UsageError, match="image-to-image network"):
        cliquegen.create_model(spec, global_pool="")
