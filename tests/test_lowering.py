"""Properties of the lowering over random specs: the stage equations and the parameter reuse."""

from __future__ import annotations

import re

import torch
from hypothesis import given
from reference import reference_forward
from strategies import specs

from cliquegen import build_fx, compile_spec
from cliquegen.compiler.ir import graph_blocks
from cliquegen.spec.model import Spec


def expected_terms(order: tuple[int, ...], j: int, stage: int) -> set[tuple[tuple[int, int], int]]:
    """Terms of the equation of X_j at `stage` as {((i, j), stage of X_i)}, from docs/paper.md."""
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


def bottleneck_params(model: torch.nn.Module, block: int) -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if re.match(rf"block{block}\.bottleneck\d", name)
    )


def bn_params(model: torch.nn.Module, block: int) -> int:
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith(f"block{block}.") and "bn" in name
    )


@given(specs(max_blocks=2))
def test_parameter_counts_follow_the_closed_form(spec: Spec) -> None:
    model = build_fx(spec)
    graph = compile_spec(spec).graph
    c0s = [info.input_channels for info in graph_blocks(graph)]
    for b, (block, c0) in enumerate(zip(spec.resolved_blocks(), c0s, strict=True)):
        n, k, s = block.layers, block.channels, block.conv_kernel**2
        k_out = k * block.bottleneck_width if block.bottleneck else k  # what the W_ij produce
        edges = [e for e in graph.edges if graph.nodes[e[1]]["block"] == b]
        used = {graph.edges[e]["weight"] for e in edges}
        weights = sum(1 for name, _ in model.named_parameters() if name.startswith(f"block{b + 1}.w"))
        updates = [node for node in graph.nodes if node[0] == b and node[1] > 0]
        if block.share_weights:
            stage_one_pairs = n + n * (n - 1) // 2
            full = (n * c0 + n * (n - 1) * k) * k_out * s
            if len(used) == n + n * (n - 1):
                assert conv_params(model, b + 1) == full
            else:  # weights that no stage uses are not created
                assert len(used) >= stage_one_pairs
                assert conv_params(model, b + 1) < full
            assert weights == len(used)
        else:  # one W_ij per term of every stage equation
            assert weights == len(edges)
            inputs = sum(graph.nodes[src]["channels"] for src, _ in edges)
            assert conv_params(model, b + 1) == inputs * k_out * s
        # one BatchNorm per update (two with a bottleneck), over the update's input channels
        expected_bn = sum(
            2 * sum(graph.nodes[src]["channels"] for src in graph.predecessors(u)) for u in updates
        )
        expected_bn += 2 * k_out * len(updates) if block.bottleneck else 0
        assert bn_params(model, b + 1) == expected_bn
        if block.bottleneck:  # the layer's k_out -> k conv: one per layer, or one per update untied
            convs = n if block.share_weights else len(updates)
            assert bottleneck_params(model, b + 1) == convs * k_out * k * block.kernel**2


@given(specs(max_blocks=2))
def test_more_stages_add_batchnorms_and_only_untied_convolutions(spec: Spec) -> None:
    def with_stages(stages: int) -> Spec:
        data = spec.model_dump()
        for block in data["blocks"]:
            block["schedule"] = {"stages": stages, "partial": None, "order": block["schedule"]["order"]}
            block["transit"] = stages
            if block["feature"] is not None:
                block["feature"] = ["x0", stages]
        data["defaults"]["feature"] = ["x0", stages]
        return Spec.model_validate(data)

    two, four = build_fx(with_stages(2)), build_fx(with_stages(4))
    for b, block in enumerate(spec.resolved_blocks()):
        n, k, kernel = block.layers, block.channels, block.conv_kernel
        k_out = k * block.bottleneck_width if block.bottleneck else k
        if block.share_weights:
            assert conv_params(two, b + 1) == conv_params(four, b + 1)
            assert bottleneck_params(two, b + 1) == bottleneck_params(four, b + 1)
        else:  # each further stage: its own n(n-1) W_ij (and n bottleneck convs)
            added = conv_params(four, b + 1) - conv_params(two, b + 1)
            assert added == 2 * n * (n - 1) * k * k_out * kernel**2
            extra = 2 * n * k_out * k * block.kernel**2 if block.bottleneck else 0
            assert bottleneck_params(four, b + 1) - bottleneck_params(two, b + 1) == extra
        per_update = 2 * (n - 1) * k + (2 * k_out if block.bottleneck else 0)  # BN over the other n-1 layers
        assert bn_params(four, b + 1) - bn_params(two, b + 1) == 2 * n * per_update


SHARED_CONV = re.compile(r"^block(\d+)\.(w\d+_\d+|bottleneck\d+)(_s\d+)?(\.weight)?$")


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
    """A shared W_ij's gradient sums every stage's use; an untied one is used by one stage."""
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
    blocks = spec.resolved_blocks()
    for name in names:
        stages = [stage for key, stage in copies if key == name]
        if not blocks[int(SHARED_CONV.match(name)[1]) - 1].share_weights:
            assert stages == [int(name.split("_s")[-1].split(".")[0])]  # its own stage only
        total = sum(copy.grad for (key, _), copy in copies.items() if key == name)
        torch.testing.assert_close(shared[name].grad, total, rtol=1e-4, atol=1e-5)
