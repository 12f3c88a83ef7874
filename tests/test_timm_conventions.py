"""timm's model conventions on both emitters' models, without timm: device and dtype, the
unpooled ``forward_features`` and ``global_pool``, ``head_hidden_size``, unknown arguments,
pruning, and TorchScript (the FX models)."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch

from cliquegen import UsageError, create_model, load_spec
from cliquegen.compiler.lower import compile_spec
from cliquegen.emit.fx import build_graph
from cliquegen.interop.timm import pretrained_cfg
from cliquegen.spec.network import ImageSpec
from cliquegen.spec.shipped import resolve_spec, shipped_specs

EMITTERS = ["fx", "source"]
MULTISCALE = load_spec(
    """
name: scales
num_classes: 4
input: {channels: 3, height: 16, width: 16}
stem: {channels: 6}
blocks:
  - {layers: 3, channels: 4, dropout: 0.2}
  - {layers: 2, channels: 4, bottleneck: true}
  - {layers: 2, channels: 5, schedule: {stages: 3}, feature: [x0, 3], transit: 3}
transition: {attention: true}
head: {compression: true}
"""
)
DENSE = load_spec(
    """
name: dense
num_classes: 3
input: {channels: 3, height: 16, width: 16}
stem: {channels: 8}
defaults: {schedule: {stages: 1}, bottleneck: true, bottleneck_width: 4, feature: [x0, 1], transit: [x0, 1]}
blocks:
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 4}
  - {layers: 2, channels: 4}
transition: {compression: 0.5}
head: {kind: last}
"""
)
SPECS = {"multiscale": MULTISCALE, "last": DENSE}


def build(spec, emit: str, **kwargs) -> torch.nn.Module:
    """The model with seeded weights and BatchNorm statistics that are not the initial ones."""
    torch.manual_seed(0)
    model = create_model(spec, emit=emit, **kwargs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model.eval()


def images(size: int = 16, channels: int = 3) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(size))


class Program(torch.nn.Module):
    """The Program's own graph over a model's modules: the computation as it was lowered."""

    def __init__(self, model: torch.nn.Module, spec) -> None:
        super().__init__()
        self.run = torch.fx.GraphModule(model, build_graph(compile_spec(spec).program))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


@pytest.mark.parametrize("emit", EMITTERS)
@pytest.mark.parametrize("head", sorted(SPECS))
def test_forward_is_the_programs_computation_bit_for_bit(emit: str, head: str) -> None:
    spec = SPECS[head]
    model, x = build(spec, emit), images()
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(logits, Program(model, spec)(x))
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 4, 4)  # the last block's size
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.head_hidden_size) == (2, model.num_features)
        if head == "last":  # the same ops: the same bits
            assert torch.equal(model.forward_head(features), logits)
        else:  # the branches' windows, then the whole map: the same mean, summed in another order
            torch.testing.assert_close(model.forward_head(features), logits, rtol=1e-6, atol=1e-6)
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, features) and len(maps) == 3


def test_the_multiscale_map_is_each_branch_pooled_to_the_last_blocks_size() -> None:
    model, x = build(MULTISCALE, "fx"), images()
    branches = []
    hooks = [
        bn.register_forward_hook(lambda module, args, out: branches.append(torch.relu(out)))
        for bn in (model.head.bn1, model.head.bn2, model.head.bn3)
    ]
    with torch.no_grad():
        features = model.forward_features(x)
    for hook in hooks:
        hook.remove()
    assert [b.shape[-1] for b in branches] == [16, 8, 4]
    expected = torch.cat([torch.nn.functional.avg_pool2d(b, b.shape[-1] // 4) for b in branches], 1)
    assert torch.equal(features, expected)
    for branch, part in zip(branches, features.split([b.shape[1] for b in branches], 1), strict=True):
        torch.testing.assert_close(part.mean((2, 3)), branch.mean((2, 3)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("emit", EMITTERS)
def test_sizes_that_do_not_divide_give_a_coarser_map_with_the_same_pool(emit: str) -> None:
    model, x = build(MULTISCALE, emit), images(18)  # blocks at 18, 9 and 4: pooled to 1x1
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, model.num_features, 1, 1)
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("emit", EMITTERS)
@pytest.mark.parametrize("head", sorted(SPECS))
def test_global_pool_and_the_classifier_follow_timm(emit: str, head: str) -> None:
    spec = SPECS[head]
    model, x = build(spec, emit), images()
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        model.reset_classifier(0)  # keeps the pooling
        assert model.num_classes == 0 and torch.equal(model.forward_head(features), pooled)
        assert model(x).shape == (2, model.head_hidden_size)
        model.reset_classifier(0, "")
        assert torch.equal(model(x), features)  # the unpooled map
        assert torch.equal(model.forward_head(features, pre_logits=True), features)
        model.reset_classifier(5, "")  # a classifier on an unpooled map reads each position
        per_position = model(x)
        assert per_position.shape == (2, 5, 4, 4)
        expected = model.classifier(features[:, :, 1, 2])
        torch.testing.assert_close(per_position[:, :, 1, 2], expected)
        model.reset_classifier(5, "avg")
        assert model(x).shape == (2, 5) and model.global_pool == "avg"
        with pytest.raises(ValueError, match="global_pool='max'"):
            model.reset_classifier(5, "max")
        headless = build(spec, emit, num_classes=0, global_pool="")
        assert torch.equal(headless(x), features) and headless.global_pool == ""
    with pytest.raises(UsageError, match="global_pool='max'"):
        create_model(spec, emit=emit, global_pool="max")


@pytest.mark.parametrize("emit", EMITTERS)
def test_a_new_classifier_is_made_where_and_as_the_model_is(emit: str) -> None:
    model = build(DENSE, emit)
    model.to(device="meta", dtype=torch.float64)
    model.reset_classifier(0)
    model.reset_classifier(2)
    assert {(p.device.type, p.dtype) for p in model.classifier.parameters()} == {("meta", torch.float64)}
    assert not any(module.training for module in model.modules())


@pytest.mark.parametrize("emit", EMITTERS)
def test_device_and_dtype_build_the_parameters_there(emit: str) -> None:
    model = create_model(MULTISCALE, emit=emit, device="meta", dtype=torch.float64)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {t.device.type for t in tensors.values()} == {"meta"}
    floats = {t.dtype for name, t in tensors.items() if not name.endswith("num_batches_tracked")}
    assert floats == {torch.float64}
    out = model(images().to("meta", torch.float64))
    assert out.shape == (2, 4) and out.is_meta
    with torch.device("meta"):  # as timm builds, inside a device context
        assert next(create_model(DENSE, emit=emit).parameters()).is_meta
    torch.manual_seed(0)  # on the CPU in float32: the weights of a build without them
    plain = create_model(DENSE, emit=emit)
    torch.manual_seed(0)
    placed = create_model(DENSE, emit=emit, device="cpu", dtype=torch.float32)
    a, b = plain.state_dict(), placed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("emit", EMITTERS)
def test_an_unknown_argument_is_a_type_error_with_our_message(emit: str) -> None:
    with pytest.raises(TypeError, match="^override not_a_model_arg: unknown key$") as error:
        create_model(DENSE, emit=emit, not_a_model_arg=1)
    assert isinstance(error.value, UsageError)  # the CLI's exit 2
    with pytest.raises(TypeError, match="did you mean `num_classes`"):
        create_model(DENSE, emit=emit, num_clases=3)


def test_every_shipped_spec_states_the_size_of_its_unpooled_map() -> None:
    for name in shipped_specs():
        spec = resolve_spec(name)
        if isinstance(spec, ImageSpec):  # an image-to-image network is no timm model
            continue
        model = create_model(spec, device="meta")
        channels, height, width = spec.input.channels, spec.input.height, spec.input.width
        features = model.forward_features(torch.empty(1, channels, height, width, device="meta"))
        cfg = pretrained_cfg(spec)
        assert tuple(features.shape[2:]) == cfg["pool_size"], name
        assert features.shape[1] == model.num_features == model.head_hidden_size, name
        assert model.in_chans == cfg["input_size"][0], name


@pytest.mark.parametrize("emit", EMITTERS)
def test_pruning_a_densenet_keeps_forward_features_on_the_blocks_kept(emit: str) -> None:
    model, x = build(DENSE, emit), images()
    with torch.no_grad():
        taps = model.forward_intermediates(x, intermediates_only=True)
    for index in range(2):
        pruned = copy.deepcopy(model)
        assert pruned.prune_intermediate_layers([index]) == [index]
        with torch.no_grad():
            assert torch.equal(pruned.forward_features(x), taps[index])
            final, maps = pruned.forward_intermediates(x, indices=[index])
            assert torch.equal(final, taps[index]) and torch.equal(maps[0], taps[index])
            assert torch.equal(pruned(x), taps[index])  # no pooling, no classifier
        assert pruned.num_features == pruned.head_hidden_size == model.feature_info[index]["num_chs"]
        pruned.reset_classifier(7, "avg")
        assert pruned(x).shape == (2, 7)
        pruned.train()
        pruned.forward_features(x).sum().backward()
        unused = [name for name, p in pruned.named_parameters() if p.grad is None]
        if emit == "fx":  # the generated source keeps the transition after the last block kept
            assert unused == ["classifier.weight", "classifier.bias"]
        else:
            assert all(name.startswith((f"transition{index + 1}.", "classifier.")) for name in unused)


@pytest.mark.parametrize("emit", EMITTERS)
def test_pruning_at_the_last_block_removes_only_the_classifier(emit: str) -> None:
    for spec in SPECS.values():
        model, x = build(spec, emit), images()
        with torch.no_grad():
            features = model.forward_features(x)
            model.prune_intermediate_layers(3, prune_head=False)  # nothing to remove
            assert model.num_classes == spec.num_classes
            model.prune_intermediate_layers([2])
            assert model.num_classes == 0 and torch.equal(model(x), features)


@pytest.mark.parametrize("emit", EMITTERS)
def test_a_pruned_multiscale_head_serves_only_the_maps(emit: str) -> None:
    model, x = build(MULTISCALE, emit), images()
    model.prune_intermediate_layers([0, 1])
    with torch.no_grad():
        assert len(model.forward_intermediates(x, intermediates_only=True)) == 2
        for run in (model.forward_features, model, model.forward_intermediates):
            with pytest.raises(RuntimeError, match="pruned .* multi-scale head reads every block"):
                run(x)


def test_generated_source_says_it_does_not_script() -> None:
    with pytest.raises(RuntimeError, match="generated source does not script: .* partial"):
        torch.jit.script(build(DENSE, "source"))


@pytest.mark.parametrize("head", sorted(SPECS))
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_torchscript_compiles_the_fx_models(head: str, memory_efficient: bool) -> None:
    model, x = build(SPECS[head], "fx", memory_efficient=memory_efficient), images()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks TorchScript deprecated
        scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
    model.train()
    scripted.train()
    torch.manual_seed(3)
    expected = model(x)
    expected.sum().backward()
    torch.manual_seed(3)
    assert torch.equal(scripted(x), expected)  # the same dropout masks, BatchNorm in training
    model.eval()
    model.reset_classifier(0, "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unpooled = torch.jit.script(model)
    with torch.no_grad():
        assert torch.equal(unpooled(x), model.forward_features(x))


@pytest.mark.parametrize("change", ["none", "unpooled", "per position", "pruned", "checkpointing"])
def test_an_fx_model_pickles_whole_with_its_head(change: str) -> None:
    model, x = build(DENSE, "fx"), images()
    if change == "unpooled":
        model.reset_classifier(0, "")
    elif change == "per position":
        model.reset_classifier(2, "")
    elif change == "pruned":
        model.prune_intermediate_layers([1])
    elif change == "checkpointing":
        model.set_grad_checkpointing(True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    twin = torch.load(buffer, weights_only=False)
    assert type(twin).__name__ == type(model).__name__ == "Dense" and not twin.training
    assert list(twin.state_dict()) == list(model.state_dict()) and twin.code == model.code
    assert (twin.global_pool, twin.num_features, twin.pruned) == (
        model.global_pool,
        model.num_features,
        model.pruned,
    )
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))
        assert torch.equal(twin.forward_features(x), model.forward_features(x))
