"""Properties of the lowering over random specs: the stage equations and the parameter reuse."""

from __future__ import annotations

import re

import torch
from hypothesis import given
from reference import reference_forward
from strategies import specs

from cliquegen import build_fx, compile_spec
from cliquegen.spec import Spec


def expected_terms(order: tuple[int, ...], j: int, stage: int) -> set[tuple[tuple[int, int], int]]:
    """Terms of the equation of X_j at `stage` as {((i, j), stage of X_i)}, from PAPER.md."""
    before = order[: order.index(j)]
    after = order[order.index(j) + 1 :]
    if stage == 1:
        return {((0, j), 0)} | {((i, j), 1) for i in before}
    return {((i, j), stage) for i in before} | {((m, j), stage - 1) for m in after}


@given(specs())
def test_in_edges_are_exactly_the_stage_equation(spec: Spec) -> None:
    graph = compile_spec(spec).graph
    for b, block in enumerate(spec.resolved_blocks()):
        nodes = [n for n, data in graph.nodes(data=True) if data["block"] == b]
        updates = [n for n in nodes if graph.nodes[n]["layer"] > 0]
        for node in updates:
            data = graph.nodes[node]
            got = {
                (graph.edges[src, node]["weight"], graph.nodes[src]["stage"])
                for src in graph.predecessors(node)
            }
            assert got == expected_terms(block.order, data["layer"], data["stage"])
            assert all(
                graph.nodes[src]["layer"] == graph.edges[src, node]["weight"][0]
                for src in graph.predecessors(node)
            )
        # every stage updates every layer once, in order; a partial last stage only its first X
        for stage in range(1, block.stages + 1):
            layers = [n[1] for n in sorted(updates, key=lambda n: graph.nodes[n]["step"]) if n[2] == stage]
            count = block.partial if stage == block.stages and block.partial is not None else block.layers
            assert layers == list(block.order[:count])
        steps = sorted(graph.nodes[n]["step"] for n in nodes)
        assert steps == list(range(len(nodes)))
        assert graph.in_degree((b, 0, 0)) == 0


def conv_params(model: torch.nn.Module, block: int) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.startswith(f"block{block}.w"))


def bn_params(model: torch.nn.Module, block: int) -> int:
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith(f"block{block}.") and "bn" in name
    )


@given(specs(max_blocks=2))
def test_parameter_counts_follow_the_closed_form(spec: Spec) -> None:
    model = build_fx(spec)
    c0 = spec.stem.channels
    for b, block in enumerate(spec.resolved_blocks()):
        n, k, s = block.layers, block.channels, block.conv_kernel**2
        graph = compile_spec(spec).graph
        used = {graph.edges[e]["weight"] for e in graph.edges if graph.nodes[e[1]]["block"] == b}
        stage_one_pairs = n + n * (n - 1) // 2
        full = n * c0 * k * s + n * (n - 1) * k * k * s
        if len(used) == n + n * (n - 1):
            assert conv_params(model, b + 1) == full
        else:  # weights that no stage uses are not created
            assert len(used) >= stage_one_pairs
            assert conv_params(model, b + 1) < full
        assert sum(1 for name, _ in model.named_parameters() if name.startswith(f"block{b + 1}.w")) == len(
            used
        )
        # one BatchNorm per update (two with a bottleneck), over the update's input channels
        updates = [node for node in graph.nodes if node[0] == b and node[1] > 0]
        expected_bn = sum(
            2 * sum(graph.nodes[src]["channels"] for src in graph.predecessors(u)) for u in updates
        )
        expected_bn += 2 * k * len(updates) if block.bottleneck else 0
        assert bn_params(model, b + 1) == expected_bn
        c0 = n * k


@given(specs(max_blocks=2))
def test_more_stages_add_batchnorms_but_no_convolutions(spec: Spec) -> None:
    def with_stages(stages: int) -> Spec:
        data = spec.model_dump()
        for block in data["blocks"]:
            block["schedule"] = {"stages": stages, "partial": None, "order": block["schedule"]["order"]}
            block["feature"], block["transit"] = ["x0", stages], stages
        return Spec.model_validate(data)

    two, four = build_fx(with_stages(2)), build_fx(with_stages(4))
    for b, block in enumerate(spec.blocks):
        assert conv_params(two, b + 1) == conv_params(four, b + 1)
        n, k = block.layers, block.channels
        per_update = 2 * (n - 1) * k + (2 * k if block.bottleneck else 0)  # BN over the other n-1 layers
        assert bn_params(four, b + 1) - bn_params(two, b + 1) == 2 * n * per_update


SHARED_CONV = re.compile(r"^block\d+\.(w\d+_\d+|bottleneck\d+\.weight)$")


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


@given(specs())
def test_fx_equals_the_reference_implementation(spec: Spec) -> None:
    # in float64, so that a wrong term shows far above rounding: train-mode BatchNorm over a
    # batch of 2 at 1x1 or 2x2 pixels amplifies float32 rounding of a reordered sum to ~1e-5
    torch.manual_seed(0)
    model = build_fx(spec).double()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width, dtype=torch.float64)
    state = model.state_dict()
    for training in (False, True):
        model.train(training)
        with torch.no_grad():
            expected = reference_forward(spec, state, x, training=training)
            got = model(x)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@given(specs(max_blocks=2))
def test_shared_weight_gradient_is_the_sum_over_stages(spec: Spec) -> None:
    torch.manual_seed(0)
    model = build_fx(spec).train()
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width)
    model(x).square().sum().backward()

    state = {key: value.detach() for key, value in model.state_dict().items()}
    copies: dict[tuple[str, int], torch.Tensor] = {}

    def per_stage_copy(name: str, stage: int) -> torch.Tensor:
        if (name, stage) not in copies:
            copies[(name, stage)] = state[name].clone().requires_grad_()
        return copies[(name, stage)]

    reference_forward(spec, state, x, training=True, weight=per_stage_copy).square().sum().backward()
    shared = dict(model.named_parameters())
    names = {name for name, _ in copies}
    assert names == {name for name in shared if SHARED_CONV.match(name)}
    for name in names:
        total = sum(copy.grad for (key, _), copy in copies.items() if key == name)
        torch.testing.assert_close(shared[name].grad, total, rtol=1e-4, atol=1e-5)
