"""DenseNet and untied stage weights in the spec language: sizes, names and semantics."""

from __future__ import annotations

import re

import pytest
import torch
from reference import reference_forward

from cliquegen import build_fx, compile_spec, load_spec, summarize
from cliquegen.compiler.ir import graph_blocks
from cliquegen.emit.build import build_source_model
from cliquegen.spec.limits import estimate
from cliquegen.spec.model import Spec
from cliquegen.spec.shipped import shipped_specs

# torchvision's parameter counts of its DenseNets
TORCHVISION_DENSENET = {
    "densenet-121": 7_978_856,
    "densenet-169": 14_149_480,
    "densenet-201": 20_013_928,
    "densenet-161": 28_681_000,
}
# the DenseNet rows of the CliqueNet paper's CIFAR-10 table: (params in millions, GFLOPs) as printed
CIFAR_DENSENET = {
    "densenet-k12-t36": (1.0, 0.53),
    "densenet-k12-t96": (7.0, 3.54),
    "densenet-k24-t96": (27.2, 13.78),
    "densenet-bc-k12-t96": (0.8, 0.58),
    "densenet-bc-k24-t246": (15.3, 10.84),
}
K36_W_IJ = 36 * 36 * 9  # parameters of one 3x3 W_ij of k36-t12
W_IJ = re.compile(r"^block\d+\.w\d+_\d+(_s\d+)?$")


def _spec(name: str) -> Spec:
    return load_spec(shipped_specs()[name])


def _with(spec: Spec, **changes) -> Spec:
    data = spec.model_dump(exclude_unset=True)
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target[key] = value
    return Spec.model_validate(data)


@pytest.mark.parametrize("name", sorted(TORCHVISION_DENSENET))
def test_imagenet_densenets_have_torchvisions_parameter_counts(name: str) -> None:
    spec = _spec(name)
    assert summarize(compile_spec(spec)).params == TORCHVISION_DENSENET[name]
    assert estimate(spec).params == TORCHVISION_DENSENET[name]


@pytest.mark.parametrize("name", sorted(CIFAR_DENSENET))
def test_cifar_densenets_match_the_papers_table_to_its_printed_precision(name: str) -> None:
    summary = summarize(compile_spec(_spec(name)))
    params, gflops = CIFAR_DENSENET[name]
    assert round(summary.params / 1e6, 1) == params
    assert round(summary.flops / 1e9, 2) == gflops


def test_densenet_121_is_stage_one_cliques_with_torchvisions_shapes() -> None:
    compiled = compile_spec(_spec("densenet-121"))
    modules = compiled.program.modules
    # layer l of block 1 reads X0 (64 channels) and l - 1 layers of 32: conv1 is 1x1 to 4k = 128
    assert modules["block1.w0_1"].args["shape"] == (128, 64, 1, 1)
    assert modules["block1.w5_6"].args["shape"] == (128, 32, 1, 1)
    assert modules["block1.bn6_s1"].args["num_features"] == 64 + 5 * 32
    assert modules["block1.bottleneck_bn6_s1"].args["num_features"] == 128
    assert (
        modules["block1.bottleneck6"].args["in_channels"],
        modules["block1.bottleneck6"].args["out_channels"],
    ) == (
        128,
        32,
    )
    # transitions halve the whole concatenation: 64 + 6 * 32 = 256 -> 128, 128 + 12 * 32 = 512 -> 256 ...
    for t, (c_in, c_out) in enumerate([(256, 128), (512, 256), (1024, 512)], start=1):
        conv = modules[f"transition{t}.conv"].args
        assert (conv["in_channels"], conv["out_channels"]) == (c_in, c_out)
    assert [info.input_channels for info in graph_blocks(compiled.graph)] == [64, 128, 256, 512]
    # the head reads the last block only: one BN over its 512 + 16 * 32 = 1024 channels
    heads = sorted(path for path in modules if path.startswith("head."))
    assert heads == ["head.bn"]
    assert modules["head.bn"].args["num_features"] == 1024
    assert modules["classifier"].args == {"in_features": 1024, "out_features": 1000}
    # no stage II anywhere, and the UpdateGraph is the dense connectivity: every earlier tensor
    graph = compiled.graph
    assert {data["stage"] for _, data in graph.nodes(data=True)} == {0, 1}
    for node in graph.nodes:
        b, j, _ = node
        if j > 0:
            assert sorted(src[1] for src in graph.predecessors(node)) == list(range(j))


def test_untied_k36_t12_gives_each_stage_its_own_weights() -> None:
    tied, untied = _spec("cliquenet-k36-t12"), _spec("cliquenet-k36-t12-untied")
    tied_keys, untied_keys = set(build_fx(tied).state_dict()), set(build_fx(untied).state_dict())
    weights = {key for key in tied_keys if W_IJ.match(key)}
    untied_weights = {key for key in untied_keys if W_IJ.match(key)}
    assert tied_keys - weights == untied_keys - untied_weights  # BatchNorms and the rest as they were
    assert {"block1.w1_2", "block1.w2_1"} <= weights
    # Stage I: W0j and W_ij with i before j; Stage II: every W_ij between layers, its own copy
    assert {"block1.w0_1_s1", "block1.w1_2_s1", "block1.w1_2_s2", "block1.w2_1_s2"} <= untied_weights
    assert "block1.w2_1_s1" not in untied_weights  # Stage I never reads a later layer
    assert len(untied_weights) == 3 * (4 + 6 + 12) and len(weights) == 3 * (4 + 12)
    # the tied model has 16 W_ij per block (the 6 with i after j serve Stage II alone already);
    # untied, Stage II brings its own copies of the 6 that Stage I also uses
    gained = summarize(compile_spec(untied)).params - summarize(compile_spec(tied)).params
    assert gained == 3 * 6 * K36_W_IJ
    # each further stage adds all n(n-1) = 12 W_ij of every block again; tied, none
    three = {"defaults__schedule": {"stages": 3}, "defaults__feature": ["x0", 3], "defaults__transit": 3}
    params = {
        (share, stages): summarize(compile_spec(_with(spec, **(three if stages == 3 else {})))).params
        for share, spec in ((True, tied), (False, untied))
        for stages in (2, 3)
    }
    bn_stage_three = params[(True, 3)] - params[(True, 2)]  # BatchNorms only
    assert params[(False, 3)] - params[(False, 2)] == bn_stage_three + 3 * 12 * K36_W_IJ


def test_untied_block_source_names_the_stage_of_each_weight() -> None:
    spec = Spec.model_validate(
        {
            "name": "tiny-untied",
            "input": {"channels": 3, "height": 8, "width": 8},
            "num_classes": 3,
            "defaults": {"share_weights": False, "bottleneck": True, "bottleneck_width": 2},
            "blocks": [{"layers": 2, "channels": 4}, {"layers": 3, "channels": 4, "share_weights": True}],
            "stem": {"channels": 4},
        }
    )
    keys = set(build_fx(spec).state_dict())
    assert {"block1.w1_2_s2", "block1.bottleneck1_s1.weight", "block1.bottleneck1_s2.weight"} <= keys
    assert {"block2.w1_2", "block2.bottleneck1.weight"} <= keys  # the block that shares
    torch.manual_seed(0)
    source = build_source_model(spec).eval()
    torch.manual_seed(0)
    fx = build_fx(spec).eval()
    assert list(source.state_dict()) == list(fx.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(source(x), fx(x))


def test_transition_compression_keeps_the_floor_of_the_written_ratio() -> None:
    # 0.29 * 100 is 28.999999999999996 in binary floating point; the ratio as written keeps 29
    spec = Spec.model_validate(
        {
            "name": "compressed",
            "input": {"channels": 3, "height": 8, "width": 8},
            "num_classes": 2,
            "defaults": {"schedule": {"stages": 1}, "feature": ["x0", 1], "transit": 1},
            "blocks": [{"layers": 4, "channels": 25}, {"layers": 1, "channels": 3}],
            "transition": {"compression": 0.29},
            "stem": {"channels": 4},
        }
    )
    compiled = compile_spec(spec)
    assert compiled.program.modules["transition1.conv"].args["out_channels"] == 29
    assert graph_blocks(compiled.graph)[1].input_channels == 29
    assert spec.block_input_channels() == [4, 29]


def test_a_densenet_agrees_with_the_reference_in_both_emitters() -> None:
    """A small DenseNet-BC: bottleneck 4k, X0 in the transit, compression, head on the last block."""
    spec = Spec.model_validate(
        {
            "name": "tiny-densenet",
            "input": {"channels": 3, "height": 16, "width": 16},
            "num_classes": 5,
            "stem": {"kind": "imagenet", "channels": 6},
            "defaults": {
                "schedule": {"stages": 1},
                "bottleneck": True,
                "bottleneck_width": 4,
                "feature": ["x0", 1],
                "transit": ["x0", 1],
            },
            "blocks": [{"layers": 3, "channels": 2}, {"layers": 2, "channels": 2}],
            "transition": {"compression": 0.5},
            "head": {"kind": "last"},
        }
    )
    torch.manual_seed(0)
    fx = build_fx(spec).double().eval()
    for module in fx.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    source = build_source_model(spec).double().eval()
    source.load_state_dict(fx.state_dict())
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_forward(spec, fx.state_dict(), x)
        torch.testing.assert_close(fx(x), expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(source(x), expected, rtol=1e-9, atol=1e-9)
        assert fx.forward_features(x).shape == (2, fx.num_features, 2, 2) == (2, (6 + 6) // 2 + 2 * 2, 2, 2)


def test_contradictions_are_located_errors() -> None:
    from cliquegen.errors import SpecError

    base = "name: t\nnum_classes: 2\nblocks: [{layers: 2, channels: 2}]\n"
    with pytest.raises(SpecError) as error:
        load_spec(base + "head: {kind: last, compression: true}\n", path="t.yaml")
    (diagnostic,) = error.value.diagnostics
    assert (diagnostic.line, diagnostic.column) == (4, 33)
    assert "head kind `last` has none" in diagnostic.message
