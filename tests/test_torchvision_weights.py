"""torchvision's DenseNet weights in cliquegen: strict conversion both ways, equal logits.

``torchvision_densenet.py`` is torchvision's DenseNet written from its documented layout; its
state_dict is converted with the CLI, loaded into ``create_model`` with strict=True, and must
give its logits with both emitters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision_densenet import DenseNet, legacy_names, randomize

import cliquegen
from cliquegen import cli
from cliquegen.checkpoint.files import load_weights_file
from cliquegen.errors import WeightsError
from cliquegen.interop.torchvision import from_torchvision, torchvision_links

TOLERANCE = 1e-5  # relative: max |ours - theirs| / max |theirs|

# a small DenseNet-BC in torchvision's layout: growth 4, bn_size 4, blocks of 2, 3, 2 layers
TINY = """
name: tiny-densenet
input: {channels: 3, height: 32, width: 32}
num_classes: 5
stem: {kind: imagenet, channels: 8}
defaults:
  schedule: {stages: 1}
  bottleneck: true
  bottleneck_width: 4
  feature: [x0, 1]
  transit: [x0, 1]
blocks:
  - {layers: 2, channels: 4}
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 4}
transition: {compression: 0.5}
head: {kind: last}
"""


def tiny_torchvision() -> DenseNet:
    return randomize(DenseNet(4, (2, 3, 2), num_init_features=8, bn_size=4, num_classes=5), seed=3).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY)
    return folder


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


@pytest.mark.parametrize("names", ["current", "legacy"])
def test_torchvision_weights_give_torchvisions_logits_in_both_emitters(
    tiny: Path, names: str, capsys: pytest.CaptureFixture
) -> None:
    theirs = tiny_torchvision()
    state = theirs.state_dict()
    torch.save(legacy_names(state) if names == "legacy" else state, tiny / f"{names}.pth")
    out = tiny / f"{names}-ours.pt"
    argv = ["import-weights", "--format", "torchvision", str(tiny / f"{names}.pth")]
    assert cli.main([*argv, "--spec", str(tiny / "tiny.yaml"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tensors for tiny-densenet" in printed
    if names == "legacy":  # the old files have no num_batches_tracked
        norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in theirs.modules())
        assert f"set {norms} missing num_batches_tracked to 0" in printed
    converted = load_weights_file(out)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = theirs(images)
        for emit in ("fx", "source"):
            model = cliquegen.create_model(str(tiny / "tiny.yaml"), emit=emit).eval()
            model.load_state_dict(converted, strict=True)
            assert relative_difference(model(images), expected) < TOLERANCE, emit


def test_export_to_torchvision_round_trips_bit_for_bit(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    ours = cliquegen.create_model(str(tiny / "tiny.yaml"))
    torch.save(ours.state_dict(), tiny / "ours.pt")
    out = tiny / "torchvision.pth"
    argv = ["export-weights", "--to", "torchvision", str(tiny / "ours.pt"), "--spec", str(tiny / "tiny.yaml")]
    assert cli.main([*argv, "-o", str(out)]) == 0
    exported = load_weights_file(out)
    theirs = DenseNet(4, (2, 3, 2), num_init_features=8, bn_size=4, num_classes=5)
    assert list(exported) == list(theirs.state_dict())  # every key, in torchvision's order
    theirs.load_state_dict(exported, strict=True)
    back = from_torchvision(exported, cliquegen.load_spec(str(tiny / "tiny.yaml")))
    assert back.keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(back[key], value), key


def test_a_conv1_weight_is_the_concatenation_of_the_layers_w_ij(tiny: Path) -> None:
    theirs = tiny_torchvision().state_dict()
    spec = cliquegen.load_spec(str(tiny / "tiny.yaml"))
    ours = from_torchvision(theirs, spec)
    conv1 = theirs["features.denseblock2.denselayer3.conv1.weight"]  # reads cat(X0, X1, X2)
    x0 = spec.block_input_channels()[1]
    assert x0 == (8 + 2 * 4) // 2
    assert conv1.shape == (16, x0 + 2 * 4, 1, 1)
    parts = [ours["block2.w0_3"], ours["block2.w1_3"], ours["block2.w2_3"]]
    assert [p.shape[1] for p in parts] == [x0, 4, 4]
    assert torch.equal(torch.cat(parts, 1), conv1)


def test_densenet_121_has_torchvisions_every_tensor() -> None:
    theirs = DenseNet()  # torchvision's densenet121 configuration
    assert sum(p.numel() for p in theirs.parameters()) == 7_978_856
    spec = cliquegen.load_spec(_shipped("densenet-121"))
    state = from_torchvision(theirs.state_dict(), spec)
    model = cliquegen.create_model("densenet-121")
    model.load_state_dict(state, strict=True)
    assert len(state) == len(model.state_dict())


def _shipped(name: str) -> Path:
    from cliquegen.spec.shipped import shipped_specs

    return shipped_specs()[name]


def test_strict_about_every_difference(tiny: Path) -> None:
    spec = cliquegen.load_spec(str(tiny / "tiny.yaml"))
    state = tiny_torchvision().state_dict()
    extra = {**state, "features.denseblock1.denselayer3.norm1.weight": torch.ones(16)}
    with pytest.raises(WeightsError, match=r"unexpected features\.denseblock1\.denselayer3\.norm1\.weight"):
        from_torchvision(extra, spec)
    missing = {key: value for key, value in state.items() if key != "features.norm5.bias"}
    with pytest.raises(
        WeightsError, match=r"missing features\.norm5\.bias \(for head\.bn\.bias, shape \(18,\)\)"
    ):
        from_torchvision(missing, spec)
    wrong = {**state, "features.denseblock1.denselayer2.conv1.weight": torch.zeros(16, 13, 1, 1)}
    with pytest.raises(WeightsError, match=r"conv1\.weight \(for block1\.w0_2 \+ block1\.w1_2\) has shape"):
        from_torchvision(wrong, spec)
    both = {
        **state,
        "features.denseblock1.denselayer1.norm.1.weight": state[
            "features.denseblock1.denselayer1.norm1.weight"
        ],
    }
    with pytest.raises(WeightsError, match="both"):
        from_torchvision(both, spec)


def test_only_torchvision_shaped_densenets_convert() -> None:
    with pytest.raises(WeightsError) as error:
        from_torchvision({}, cliquegen.load_spec(str(_shipped("cliquenet-s0"))))
    message = str(error.value)
    assert "cannot hold torchvision's DenseNet weights" in message
    assert "head.kind is 'multiscale'" in message and "block 1: stages is 2" in message
    with pytest.raises(WeightsError, match="bottleneck is false"):
        torchvision_links(cliquegen.load_spec(str(_shipped("densenet-k12-t36"))))
