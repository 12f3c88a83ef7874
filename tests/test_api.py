"""The Python API: load, compile, build and the timm-style factory."""

from __future__ import annotations

import copy
from pathlib import Path

import networkx as nx
import pytest
import torch

import cliquegen
from cliquegen import SpecError, UsageError, create_model, load_spec

TINY = """
name: tiny
num_classes: 5
input: {channels: 2, height: 8, width: 8}
stem: {channels: 4}
blocks:
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 3, schedule: {stages: 3}, feature: [x0, 3], transit: 3}
"""


def test_compile_spec_gives_the_update_graph_contract() -> None:
    graph = cliquegen.compile_spec(load_spec(TINY)).graph
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    for node, data in graph.nodes(data=True):
        assert node == (data["block"], data["layer"], data["stage"])
        assert (data["layer"] == 0) == (data["stage"] == 0)
    for src, dst, data in graph.edges(data=True):
        assert data["weight"] == (src[1], dst[1])
        assert graph.nodes[src]["step"] < graph.nodes[dst]["step"] or src[1] == 0
    block2 = [n for n in graph if n[0] == 1 and n[1] > 0]
    assert sorted(graph.nodes[n]["step"] for n in block2) == list(range(1, 7))  # 2 layers x 3 stages


def test_create_model_overrides_and_drops_none() -> None:
    model = create_model("cliquenet-k36-t12", num_classes=100, in_chans=1, drop_rate=None)
    assert model.classifier.out_features == 100
    assert model.stem.conv.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)


def test_create_model_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    assert create_model(path)(torch.randn(1, 2, 8, 8)).shape == (1, 5)
    assert create_model(str(path), num_classes=3)(torch.randn(1, 2, 8, 8)).shape == (1, 3)


def test_create_model_errors_say_the_fix() -> None:
    with pytest.raises(
        UsageError, match=r"Unknown model 'cliquenet-k36-t21'.*Did you mean 'cliquenet-k36-t12'"
    ):
        create_model("cliquenet-k36-t21")
    with pytest.raises(UsageError, match="did you mean `num_classes`"):
        create_model("cliquenet-k36-t12", num_clases=3)
    with pytest.raises(UsageError, match="unknown emitter"):
        create_model("cliquenet-k36-t12", emit="onnx")
    with pytest.raises(SpecError, match="num_classes"):
        create_model("cliquenet-k36-t12", num_classes=-1)


def test_model_helpers_and_deepcopy() -> None:
    torch.manual_seed(0)
    model = cliquegen.build_fx(load_spec(TINY)).eval()
    x = torch.randn(3, 2, 8, 8)
    features = model.forward_features(x)  # unpooled, at the last block's size
    assert features.shape == (3, model.num_features, 4, 4)
    assert model.num_features == (4 + 3 * 4) + (12 + 2 * 3)  # cat(X0, last stage) per block
    torch.testing.assert_close(model.forward_head(features), model(x))
    assert torch.equal(model.forward_head(features, pre_logits=True), features.mean((2, 3)))
    twin = copy.deepcopy(model)
    torch.testing.assert_close(twin.forward_features(x), features)
    model.reset_classifier(7)
    assert model(x).shape == (3, 7)
    assert twin(x).shape == (3, 5)


def test_fx_code_reads_with_the_program_names() -> None:
    code = cliquegen.build_fx(load_spec(TINY)).code
    for name in ("b1_x0", "b1_x3_s2", "b2_x2_s3", "self.block1.w0_1", "features", "logits"):
        assert name in code


def test_same_seed_same_weights() -> None:
    spec = load_spec(TINY)
    torch.manual_seed(3)
    first = cliquegen.build_fx(spec).state_dict()
    torch.manual_seed(3)
    second = cliquegen.build_fx(spec).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_nested_overrides_merge_section_by_section() -> None:
    s3 = cliquegen.resolve_spec("cliquenet-s3")
    merged = cliquegen.apply_overrides(s3, defaults={"dropout": 0.1})
    for before, after in zip(s3.resolved_blocks(), merged.resolved_blocks(), strict=True):
        assert after.dropout == 0.1
        kept = ("bottleneck", "kernel", "stages")
        assert [getattr(after, key) for key in kept] == [getattr(before, key) for key in kept]
    params = [cliquegen.summarize(cliquegen.compile_spec(spec)).params for spec in (s3, merged)]
    assert params[0] == params[1]  # the bottleneck stays
    deeper = {"schedule": {"stages": 3}, "feature": ["x0", 3]}
    deeper = cliquegen.apply_overrides(s3, defaults=deeper)
    assert deeper.defaults.bottleneck and deeper.resolved_blocks()[0].stages == 3
    blocks = cliquegen.apply_overrides(s3, blocks=[{"layers": 2, "channels": 8}])
    assert [(b.layers, b.channels) for b in blocks.blocks] == [(2, 8)]  # a list is replaced whole
    same = cliquegen.apply_overrides(s3, defaults={"dropout": None}, num_classes=None)
    assert same == s3


def test_override_errors_are_located_and_say_the_fix() -> None:
    with pytest.raises(SpecError) as error:
        create_model("cliquenet-s3", defaults={"dropot": 0.1})
    assert str(error.value) == (
        "<cliquenet-s3 overrides>: error: override defaults.dropot: unknown key; did you mean `dropout`?"
    )
    with pytest.raises(SpecError, match=r"override defaults\.dropout: input should be less than 1"):
        create_model("cliquenet-s3", defaults={"dropout": 1.5})
    with pytest.raises(UsageError, match="override num_clases: unknown key; did you mean `num_classes`"):
        create_model("cliquenet-s3", num_clases=3)


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_no_classes_means_no_classifier_and_pooled_features(emit: str) -> None:
    torch.manual_seed(0)
    headless = create_model(load_spec(TINY), emit=emit, num_classes=0).eval()
    assert isinstance(headless.classifier, torch.nn.Identity)
    assert not any(name.startswith("classifier") for name in headless.state_dict())
    x = torch.randn(2, 2, 8, 8)
    assert headless(x).shape == (2, headless.num_features)
    torch.testing.assert_close(headless(x), headless.forward_features(x).mean((2, 3)))
    torch.manual_seed(0)
    model = create_model(load_spec(TINY), emit=emit).eval()
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(pooled, headless(x))  # same weights, same seed
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), headless(x))
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)


def test_torch_flop_counter_agrees_with_the_summary() -> None:
    """The README points to torch.utils.flop_counter: it sees the functional update convolutions."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = cliquegen.resolve_spec("cliquenet-digits")
    model = create_model(spec).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, 8, 8))
    assert counter.get_total_flops() == cliquegen.summarize(cliquegen.compile_spec(spec)).flops
