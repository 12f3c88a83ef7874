"""PDASR's refiner: the three shipped specs against the oracle re-stated from their code
(tests/pdasr_reference.py): parameter counts, the pdasr weight format both ways, and equal
outputs and gradients with the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pdasr_reference import TEMPLATES, pdasr_refiner

import cliquegen
from cliquegen import cli, load_spec, summarize
from cliquegen.checkpoint.files import load_weights_file
from cliquegen.errors import WeightsError
from cliquegen.interop.pdasr import convert_from_pdasr, to_pdasr

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "Clique": ROOT / "specs/sr/pdasr-clique.yaml",
    "Clique-": ROOT / "specs/sr/pdasr-clique-1stage.yaml",
    "light_Clique-": ROOT / "specs/sr/pdasr-clique-light.yaml",
}
#: trainable parameters (their parameters() adds the 24 of the frozen mean shifts) and MACs at 144x144
SIZES = {
    "Clique": (2_601_420, 13_444_890_624),
    "Clique-": (1_353_420, 6_995_165_184),
    "light_Clique-": (916_940, 4_739_088_384),
}
TOLERANCE = 1e-5  # relative, float32


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def theirs_randomized(template: str, seed: int = 0) -> torch.nn.Module:
    """Their refiner with random weights, biases and PReLU slopes (none at its initial value)."""
    torch.manual_seed(seed)
    model = pdasr_refiner(template).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return model


def images(batch: int = 2, height: int = 16, width: int = 12) -> torch.Tensor:
    return 255 * torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_sizes_are_their_templates(template: str) -> None:
    spec = load_spec(SPECS[template])
    summary = summarize(cliquegen.compile_spec(spec))
    assert (summary.params, summary.macs) == SIZES[template]
    model = cliquegen.create_model(spec)
    assert sum(p.numel() for p in model.parameters()) == SIZES[template][0]
    theirs = pdasr_refiner(template)
    assert sum(p.numel() for p in theirs.parameters() if p.requires_grad) == SIZES[template][0]
    assert len(model.state_dict()) == len(theirs.state_dict()) - 4  # their mean shifts are our constants


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_their_weights_give_their_outputs(template: str) -> None:
    theirs = theirs_randomized(template)
    spec = load_spec(SPECS[template])
    conversion = convert_from_pdasr(theirs.state_dict(), spec)
    assert conversion.ignored == []
    ours = cliquegen.create_model(spec).eval()
    ours.load_state_dict(conversion.state_dict, strict=True)
    x = images()
    with torch.no_grad():
        expected = theirs(x)
        assert relative_difference(ours(x), expected) < TOLERANCE
    # and the gradients of a loss, for every parameter
    ours.train(), theirs.train()
    (ours(x) - x).square().mean().backward()
    (theirs(x) - x).square().mean().backward()
    grads = {name: p.grad for name, p in theirs.named_parameters() if p.requires_grad}
    grads |= {name: value for name, value in theirs.state_dict().items() if "mean" in name}
    expected_grads = convert_from_pdasr(grads, spec).state_dict  # their gradients under our names
    for name, parameter in ours.named_parameters():
        assert relative_difference(parameter.grad, expected_grads[name]) < 1e-4, name


def test_export_gives_their_state_dict_in_their_key_order() -> None:
    theirs = theirs_randomized("Clique-")
    spec = load_spec(SPECS["Clique-"])
    ours = convert_from_pdasr(theirs.state_dict(), spec).state_dict
    exported = to_pdasr(ours, spec)
    assert list(exported) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(exported[key], value), key


def test_their_whole_model_checkpoint_is_read_from_its_refiner_keys() -> None:
    theirs = theirs_randomized("light_Clique-")
    spec = load_spec(SPECS["light_Clique-"])
    whole = {f"P.{key}": value for key, value in theirs.state_dict().items()}
    whole["D.head.0.weight"] = torch.zeros(4, 3, 3, 3)  # the first-stage network's keys
    conversion = convert_from_pdasr(whole, spec)
    assert conversion.ignored == ["D.head.0.weight"]
    bare = convert_from_pdasr(theirs.state_dict(), spec)
    assert all(torch.equal(conversion.state_dict[k], v) for k, v in bare.state_dict.items())


def test_a_mean_shift_other_than_the_specs_is_refused() -> None:
    state = theirs_randomized("light_Clique-").state_dict()
    state["sub_mean.bias"] = state["sub_mean.bias"] + 1
    with pytest.raises(WeightsError, match=r"sub_mean\.bias is not the spec's mean shift"):
        convert_from_pdasr(state, load_spec(SPECS["light_Clique-"]))


def test_a_missing_or_extra_tensor_is_refused() -> None:
    state = theirs_randomized("light_Clique-").state_dict()
    del state["CliqueBlock.3.Fhl1.1.weight"]
    state["CliqueBlock.3.Fxx1.1.weight"] = torch.zeros(32)
    with pytest.raises(WeightsError) as info:
        convert_from_pdasr(state, load_spec(SPECS["light_Clique-"]))
    assert "missing CliqueBlock.3.Fhl1.1.weight" in str(info.value)
    assert "unexpected CliqueBlock.3.Fxx1.1.weight" in str(info.value)


def test_a_classification_spec_cannot_hold_them() -> None:
    with pytest.raises(WeightsError, match="classification network"):
        convert_from_pdasr({}, load_spec(ROOT / "specs/cifar10/cliquenet-k36-t12.yaml"))


def test_the_cli_imports_and_exports_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    theirs = theirs_randomized("light_Clique-")
    torch.save({f"P.{k}": v for k, v in theirs.state_dict().items()}, tmp_path / "model_trained.pt")
    spec = str(SPECS["light_Clique-"])
    argv = ["import-weights", "--format", "pdasr", str(tmp_path / "model_trained.pt"), "--spec", spec]
    assert cli.main([*argv, "-o", str(tmp_path / "ours.pt")]) == 0
    assert "tensors for pdasr-clique-light" in capsys.readouterr().out
    x = images(1, 8, 10)
    with torch.no_grad():
        expected = theirs(x)
        for emit in ("fx", "source"):
            model = cliquegen.create_model(spec, emit=emit).eval()
            model.load_state_dict(load_weights_file(tmp_path / "ours.pt"), strict=True)
            assert relative_difference(model(x), expected) < TOLERANCE, emit
    argv = ["export-weights", "--to", "pdasr", str(tmp_path / "ours.pt"), "--spec", spec]
    assert cli.main([*argv, "-o", str(tmp_path / "theirs.pt")]) == 0
    exported = load_weights_file(tmp_path / "theirs.pt")
    assert list(exported) == list(theirs.state_dict())
    pdasr_refiner("light_Clique-").load_state_dict(exported, strict=True)
