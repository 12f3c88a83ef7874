"""The shipped specs: they build, run, and match the paper's sizes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cliquegen import build_fx, compile_spec, create_model, list_models, load_spec, summarize
from cliquegen.spec.network import ImageSpec
from cliquegen.spec.shipped import shipped_specs

# name: (params in millions, GFLOPs) as printed in the paper (docs/paper.md); None where the paper gives none
PAPER = {
    "cliquenet-k36-t12": (0.94, 0.91),
    "cliquenet-k64-t15": (4.49, 4.21),
    "cliquenet-k80-t15": (6.94, 6.45),
    "cliquenet-k80-t18": (10.14, 9.45),
    "cliquenet-k36-t12-a": (0.98, 0.91),
    "cliquenet-k36-t12-c": (1.04, 0.98),
    "cliquenet-k36-t12-ac": (1.08, 0.98),
    "cliquenet-k80-t15-ac": (8.0, 6.88),
    "cliquenet-k12-t36": (1.05, None),
    "cliquenet-k24-t18": (0.99, None),
    "cliquenet-s0": (5.7, None),
    "cliquenet-s1": (7.96, None),
    "cliquenet-s2": (11.0, None),
    "cliquenet-s3": (14.38, None),
}
# Followed literally, the k=150, T=30 (A+B+C) row does not give the printed 10.02M / 8.49G;
# docs/paper-reproduction.md explains the gap. These are the literal model's exact sizes.
LITERAL_K150_T30_ABC = (10_480_938, 10_560_229_388)

SHIPPED = sorted(shipped_specs())


def test_every_spec_named_in_the_design_is_shipped() -> None:
    expected = {
        *PAPER,
        "cliquenet-k150-t30-abc",
        "cliquenet-i-i",
        "cliquenet-i-ii",
        "cliquenet-ii-ii",
        *(f"cliquenet-x{x}" for x in range(6)),
        "cliquenet-k36-t12-untied",
        *(f"densenet-{depth}" for depth in (121, 169, 201, 161)),
        *(f"densenet-{row}" for row in ("k12-t36", "k12-t96", "k24-t96", "bc-k12-t96", "bc-k24-t246")),
        "pdasr-clique",
        "pdasr-clique-1stage",
        "pdasr-clique-light",
        "srcliquenet-x2",
        "srcliquenet-x4",
        "srcliquenet-x2-tiny",
    }
    assert expected <= set(SHIPPED)
    assert list_models("cliquenet-s*") == ["cliquenet-s0", "cliquenet-s1", "cliquenet-s2", "cliquenet-s3"]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_sizes_match_the_paper(name: str) -> None:
    summary = summarize(compile_spec(load_spec(shipped_specs()[name])))
    params, gflops = PAPER[name]
    assert summary.params == pytest.approx(params * 1e6, rel=0.005)
    if gflops is not None:
        assert summary.flops == pytest.approx(gflops * 1e9, rel=0.01)


def test_k150_t30_abc_is_the_literal_reading() -> None:
    summary = summarize(compile_spec(load_spec(shipped_specs()["cliquenet-k150-t30-abc"])))
    assert (summary.params, summary.flops) == LITERAL_K150_T30_ABC


@pytest.mark.parametrize("name", SHIPPED)
def test_counts_agree_with_the_built_model_and_torch_flop_counter(name: str) -> None:
    spec = load_spec(shipped_specs()[name])
    summary = summarize(compile_spec(spec))
    with torch.device("meta"):
        model = build_fx(spec).eval()
        x = torch.empty(1, spec.input.channels, spec.input.height, spec.input.width)
    assert summary.params == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert summary.flops == counter.get_total_flops()


CLASSIFIERS = [name for name in SHIPPED if not name.startswith(("pdasr", "srcliquenet"))]
IMAGE_NETWORKS = [name for name in SHIPPED if name not in CLASSIFIERS]


def test_the_image_networks_are_the_image_specs() -> None:
    assert all(isinstance(load_spec(shipped_specs()[name]), ImageSpec) for name in IMAGE_NETWORKS)
    assert not any(isinstance(load_spec(shipped_specs()[name]), ImageSpec) for name in CLASSIFIERS)


@pytest.mark.parametrize("name", IMAGE_NETWORKS)
def test_shipped_image_network_runs_one_forward_pass(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = load_spec(shipped_specs()[name])
    height, width = 8, 12  # any even size (a multiple of 4 for x4)
    x = 255 * torch.rand(1, spec.input.channels, height, width)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (
        1,
        spec.output.channels or spec.input.channels,
        spec.output.scale * height,
        spec.output.scale * width,
    )
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_shipped_spec_runs_one_forward_pass(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    spec = load_spec(shipped_specs()[name])
    x = torch.randn(1, spec.input.channels, spec.input.height, spec.input.width)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (1, spec.num_classes)
    assert features.shape[:2] == (1, model.num_features)  # unpooled, as timm's forward_features
    assert torch.isfinite(logits).all()
    if spec.head.kind == "last":  # the same ops on the same map
        assert torch.equal(model.forward_head(features), logits)
    else:  # the same means, summed in another order (each branch's windows, then the map)
        scale = logits.abs().max().item()
        torch.testing.assert_close(model.forward_head(features), logits, rtol=1e-5, atol=1e-5 * scale)
