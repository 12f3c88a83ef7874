"""The timm protocol of both emitters' models, without timm: forward_intermediates (each block's
output map), feature_info, prune_intermediate_layers, set_grad_checkpointing, group_matcher."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from cliquegen import create_model, load_spec

# Every op kind: attention, compression, bottleneck, a 3-stage block; 16x16 runs channels-last.
SPEC = load_spec(
    """
name: maps
num_classes: 4
input: {channels: 3, height: 16, width: 16}
stem: {channels: 6}
blocks:
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 4, bottleneck: true}
  - {layers: 2, channels: 5, schedule: {stages: 3}, feature: [x0, 3], transit: 3}
transition: {attention: true}
head: {compression: true}
"""
)
EMITTERS = ["fx", "source"]


def build(emit: str, **overrides) -> torch.nn.Module:
    """The model with seeded weights and BatchNorm statistics that are not the initial ones."""
    torch.manual_seed(0)
    model = create_model(SPEC, emit=emit, **overrides)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model.eval()


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))


def handed_on(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """What each block hands on, seen from outside: the input of each transition's BatchNorm,
    and of the head's first module on the last block's feature."""
    seen: list[torch.Tensor] = []
    readers = [model.transition1.bn, model.transition2.bn, model.head.compress3.bn]
    hooks = [
        reader.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone())) for reader in readers
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.parametrize("emit", EMITTERS)
def test_the_maps_are_what_each_block_hands_on(emit: str) -> None:
    model, x = build(emit), images()
    with torch.no_grad():
        features, maps = model.forward_intermediates(x)
        torch.testing.assert_close(features, model.forward_features(x), rtol=0, atol=0)
    expected = handed_on(model, x)
    assert len(maps) == len(expected) == 3
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert model.feature_info == [
        {"num_chs": 12, "reduction": 1, "module": "block1"},  # 3 layers x 4, 16x16
        {"num_chs": 8, "reduction": 2, "module": "block2"},
        {"num_chs": 8 + 10, "reduction": 4, "module": "block3"},  # feature [x0, 3]: X0 + 2 x 5
    ]
    for info, tensor in zip(model.feature_info, maps, strict=True):
        assert tensor.shape == (2, info["num_chs"], 16 // info["reduction"], 16 // info["reduction"])


def test_both_emitters_give_the_same_maps() -> None:
    x = images(3)
    with torch.no_grad():
        fx_maps = build("fx").forward_intermediates(x, intermediates_only=True)
        source_maps = build("source").forward_intermediates(x, intermediates_only=True)
    for a, b in zip(fx_maps, source_maps, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("emit", EMITTERS)
def test_indices_select_as_in_timm(emit: str) -> None:
    model, x = build(emit), images()
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        for indices, taken in ((None, [0, 1, 2]), (2, [1, 2]), ([-1, 0], [2, 0]), ((1,), [1])):
            maps = model.forward_intermediates(x, indices=indices, intermediates_only=True)
            assert [m.shape for m in maps] == [every[i].shape for i in taken]
            assert all(torch.equal(m, every[i]) for m, i in zip(maps, taken, strict=True))
        for bad in ([3], [-4], 0, 4, []):
            with pytest.raises(ValueError, match="block|indices"):
                model.forward_intermediates(x, indices=bad)
        with pytest.raises(ValueError, match="NCHW"):
            model.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("emit", EMITTERS)
def test_only_the_blocks_needed_run(emit: str) -> None:
    model, x = build(emit), images()
    ran: set[str] = set()
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(lambda module, args, out, name=name: ran.add(name))
    with torch.no_grad():
        model.forward_intermediates(x, indices=[0], intermediates_only=True)
    assert any(name.startswith("block1.") for name in ran)
    assert not any(name.startswith(("block2.", "block3.", "classifier")) for name in ran)


@pytest.mark.parametrize("emit", EMITTERS)
def test_pruning_removes_what_the_maps_do_not_need(emit: str) -> None:
    model, x = build(emit), images()
    with torch.no_grad():
        expected = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    assert model.prune_intermediate_layers([0, 1]) == [0, 1]
    assert not any(key.startswith(("block3.", "classifier.")) for key in model.state_dict())
    assert any(key.startswith("block2.") for key in model.state_dict())
    assert len(model.feature_info) == 2
    with torch.no_grad():
        maps = model.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        for got, want in zip(maps, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="pruned"):
            model.forward_intermediates(x)
        with pytest.raises(RuntimeError, match="pruned"):
            model.forward_features(x)
        with pytest.raises(ValueError, match="out of range"):
            model.forward_intermediates(x, indices=[2], intermediates_only=True)
    whole = build(emit)
    assert whole.prune_intermediate_layers(3, prune_head=False) == [0, 1, 2]  # nothing to remove
    assert whole(x).shape == (2, 4)


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x).sum().backward()
    return total


@pytest.mark.parametrize("emit", EMITTERS)
def test_grad_checkpointing_switches_memory_efficient(emit: str) -> None:
    x = images()
    plain, switched = build(emit).train(), build(emit).train()
    switched.set_grad_checkpointing(True)
    assert switched.memory_efficient and not plain.memory_efficient
    assert saved_bytes(switched, x) < 0.8 * saved_bytes(plain, x)
    torch.testing.assert_close(switched(x), plain(x))
    for (name, a), (_, b) in zip(plain.named_parameters(), switched.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    switched.set_grad_checkpointing(False)
    assert not switched.memory_efficient


@pytest.mark.parametrize("emit", EMITTERS)
def test_classifier_helpers_and_parameter_groups(emit: str) -> None:
    model = build(emit)
    assert (model.num_classes, model.in_chans, model.num_features) == (4, 3, model.classifier.in_features)
    assert model.get_classifier() is model.classifier
    with pytest.raises(ValueError, match="avg"):
        model.reset_classifier(3, global_pool="max")
    model.reset_classifier(3, global_pool="avg")
    assert model.num_classes == 3
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(images()).shape == (2, model.num_features)
    matcher = model.group_matcher()
    for name, _ in model.named_parameters():
        block = re.match(matcher["blocks"], name)
        assert bool(re.match(matcher["stem"], name)) == name.startswith("stem.")
        assert (block is not None) == name.startswith(("block", "transition"))
        if block:
            assert block.group(1) == re.search(r"\d+", name).group()


def test_a_deep_copy_keeps_the_timm_attributes() -> None:
    model, x = build("fx"), images()
    model.prune_intermediate_layers([0, 1])
    twin = copy.deepcopy(model)
    assert twin.feature_info == model.feature_info and twin.pruned
    with torch.no_grad():
        for a, b in zip(
            twin.forward_intermediates(x, indices=[1], intermediates_only=True),
            model.forward_intermediates(x, indices=[1], intermediates_only=True),
            strict=True,
        ):
            assert torch.equal(a, b)


def test_outputs_compile_when_first_asked_for_and_again_after_a_change() -> None:
    model, x = build("fx").eval(), images()
    assert model.output_runs == {}  # building the model compiles only forward
    with torch.no_grad():
        features = model.forward_features(x)  # the multi-scale head's map; pooled: the features, rounded
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=1e-6, atol=1e-6)
        assert list(model.output_runs) == [("h1_relu", "h2_relu", "h3_relu", "features")]
        model.prune_intermediate_layers([0])  # a new graph: what was compiled from the old one goes
        assert model.output_runs == {}
        with pytest.raises(RuntimeError, match="pruned"):
            model.forward_features(x)


DENSE = load_spec(
    """
name: tiny-dense
num_classes: 3
input: {channels: 3, height: 16, width: 16}
stem: {channels: 8}
defaults: {schedule: {stages: 1}, bottleneck: true, bottleneck_width: 4, feature: [x0, 1], transit: [x0, 1]}
blocks:
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 4}
transition: {compression: 0.5}
head: {kind: last}
"""
)


@pytest.mark.parametrize("emit", EMITTERS)
def test_a_densenet_hands_on_its_whole_concatenation(emit: str) -> None:
    torch.manual_seed(0)
    model, x = create_model(DENSE, emit=emit).eval(), images()
    with torch.no_grad():
        features, maps = model.forward_intermediates(x)
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)
    assert [info["num_chs"] for info in model.feature_info] == [8 + 3 * 4, 10 + 2 * 4]  # X0 and every layer
    seen: list[torch.Tensor] = []
    for reader in (model.transition1.bn, model.head.bn):  # the head reads only the last block
        reader.register_forward_pre_hook(lambda _, a: seen.append(a[0].clone()))
    with torch.no_grad():
        model(x)
    for got, want in zip(maps, seen, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
