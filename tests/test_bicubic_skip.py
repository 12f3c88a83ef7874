"""Global residual learning: ``{op: add, skip: input, resize: bicubic}`` adds the network's
input enlarged as MATLAB's bicubic ``imresize`` does; image networks start from nn.Conv2d's
initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_graph_blocks import errors

from cliquegen import build_fx, compile_spec, load_spec
from cliquegen.data.resize import imresize
from cliquegen.draw.views import draw
from cliquegen.emit._runtime import bicubic_upsample
from cliquegen.emit.build import build_source_model, generate_source

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: residual-x2
input: {channels: 3, height: 8, width: 10}
output: {kind: image, scale: 2}
network:
  - {op: conv, name: embed, out: 12, kernel: 3, act: prelu}
  - {op: idwt}
  - {op: add, skip: input, resize: bicubic}
"""


@settings(max_examples=40, deadline=None)
@given(
    scale=st.integers(2, 4),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_bicubic_upsample_is_matlabs_imresize(scale: int, height: int, width: int, seed: int) -> None:
    x = torch.rand(2, 3, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(bicubic_upsample(x, scale), imresize(x, float(scale)), rtol=0, atol=1e-12)


def test_a_constant_image_stays_constant_and_a_pixel_spreads_with_the_cubic_kernel() -> None:
    assert torch.equal(bicubic_upsample(torch.full((1, 1, 3, 4), 0.25), 2), torch.full((1, 1, 6, 8), 0.25))
    impulse = torch.zeros(1, 1, 1, 7, dtype=torch.float64)
    impulse[..., 3] = 1.0
    row = bicubic_upsample(impulse, 2)[0, 0, 0]
    # output pixels 6 and 7 sample the input at 2.75 and 3.25: distances 0.25 and 0.75 from pixel 3
    near, far = 1 - 2.5 * 0.25**2 + 1.5 * 0.25**3, 1 - 2.5 * 0.75**2 + 1.5 * 0.75**3
    assert row[6].item() == pytest.approx(near) and row[5].item() == pytest.approx(far)
    assert row[7].item() == pytest.approx(near) and row[8].item() == pytest.approx(far)


def test_with_its_other_ops_silent_the_network_is_bicubic() -> None:
    model = build_fx(load_spec(SPEC))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    x = torch.rand(2, 3, 8, 10)
    torch.testing.assert_close(model(x), imresize(x, 2.0), rtol=0, atol=1e-6)


def test_fx_and_generated_source_add_the_same_enlargement() -> None:
    spec = load_spec(SPEC)
    fx_model, source_model = build_fx(spec), build_source_model(spec)
    source_model.load_state_dict(fx_model.state_dict())
    x = torch.rand(1, 3, 12, 6)  # another size than the spec's: nothing is fixed to it
    assert torch.equal(fx_model(x), source_model(x))
    source = generate_source(spec)
    assert "add1_bicubic = bicubic_upsample(x, 2)  # (B, 3, 16, 20)" in source
    assert "def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:" in source
    assert "Add the skip input, enlarged by bicubic" in source


def test_the_skip_input_without_resize_is_a_residual_on_the_input() -> None:
    text = (
        SPEC.replace("scale: 2}", "scale: 1}").replace("out: 12,", "out: 3,").replace("  - {op: idwt}\n", "")
    )
    model = build_fx(load_spec(text.replace(", resize: bicubic", "")))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    x = torch.rand(1, 3, 8, 10)
    assert torch.equal(model(x), x)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  - {op: idwt}\n",
            "  - {op: idwt}\n  - {op: conv, name: grey, out: 1}\n",
            "s.yaml:8:36: error: `resize: bicubic` enlarges `input` (3 x 8 x 10) by a whole factor of 2 or "
            "more, the same for height and width, and keeps its channels; it cannot give the 1 x 16 x 20 "
            "it is added to",
        ),
        (
            "skip: input, resize: bicubic",
            "skip: input",
            "s.yaml:7:21: error: `input` is 3 x 8 x 10 but the value it is added to is 3 x 16 x 20",
        ),
        (
            "act: prelu}",
            "act: prelu, save: input}",
            "s.yaml:5:67: error: `input` names the network's input; choose another name",
        ),
        (
            "resize: bicubic",
            "resize: bilinear",
            "s.yaml:7:36: error: `resize` must be 'bicubic', got the string 'bilinear'",
        ),
    ],
)
def test_misfits_of_the_enlarged_skip_are_located(old: str, new: str, message: str) -> None:
    assert old in SPEC
    assert errors(SPEC.replace(old, new)) == [message]


def test_a_skip_enlarged_by_a_factor_of_one_is_refused() -> None:
    text = (
        SPEC.replace("scale: 2}", "scale: 1}").replace("out: 12,", "out: 3,").replace("  - {op: idwt}\n", "")
    )
    assert any("by a whole factor of 2 or more" in error for error in errors(text))


def test_the_network_view_draws_the_skip_from_the_input() -> None:
    drawing = draw(load_spec(ROOT / "specs/sr/srcliquenet-x2-tiny.yaml"), "network")
    edges = {(src, dst): attrs for src, dst, attrs in drawing.edges}
    skip = [attrs for (src, dst), attrs in edges.items() if src == "x" and dst.startswith("add")]
    assert skip and skip[0]["style"] == "dashed" and "bicubic" in skip[0]["label"]


def test_image_networks_start_from_nn_conv2ds_initialisation() -> None:
    wide = SPEC.replace("out: 12,", "out: 400,")
    spec = load_spec(
        wide.replace("  - {op: idwt}\n", "  - {op: idwt}\n  - {op: conv, name: to_rgb, out: 3}\n")
    )
    assert spec.init.conv == "kaiming-uniform"
    weight = build_fx(spec).state_dict()["to_rgb.weight"]  # fan_in = 100 x 3 x 3
    bound = 1 / 900**0.5
    assert weight.abs().max() <= bound and weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    assert (compile_spec(spec).program.modules["to_rgb"].args["init"]) == "kaiming-uniform"
    classifier = load_spec(ROOT / "specs/digits/cliquenet-digits.yaml")
    assert classifier.init.conv == "kaiming-normal-fan-out"  # classification keeps PyTorch's He normal


def test_a_fresh_shipped_upsampler_starts_near_bicubic() -> None:
    """With nn.Conv2d's draw the untrained network adds a few levels to bicubic; He normal
    over the fan-out (the classification default) makes it add tens of times the image."""
    text = (ROOT / "specs/sr/srcliquenet-x2-tiny.yaml").read_text()
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    detail = {}
    for init in ("kaiming-uniform", "kaiming-normal-fan-out"):
        torch.manual_seed(0)
        model = build_fx(load_spec(text.replace("\nnetwork:", f"\ninit: {{conv: {init}}}\nnetwork:")))
        with torch.no_grad():
            detail[init] = (model(x) - imresize(x, 2.0)).abs().mean().item()
    assert detail["kaiming-uniform"] < 0.05 and detail["kaiming-normal-fan-out"] > 1.0
