"""The PDASR oracle (tests/pdasr_reference.py) against the facts of their code: parameter
counts, state_dict keys, the Haar transforms' band layout, and the block equations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pdasr_reference import (
    RGB_MEAN,
    TEMPLATES,
    PdasrRefiner,
    SubbandClique,
    haar_dwt,
    haar_idwt,
    pdasr_refiner,
)

SLOTS = ("ll", "lh", "hl", "hh")
#: conv input width of each update, in units of g
UPDATE_WIDTH = {1: {"ll": 1, "lh": 2, "hl": 2, "hh": 4}, 2: {"ll": 4, "lh": 2, "hl": 2, "hh": 1}}


def n_params(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


@pytest.mark.parametrize(
    ("template", "total", "trainable", "keys"),
    [
        ("Clique", 2_601_444, 2_601_420, 372),
        ("Clique-", 1_353_444, 1_353_420, 192),
        ("light_Clique-", 916_964, 916_940, 132),
    ],
)
def test_parameter_and_key_counts(template, total, trainable, keys):
    model = pdasr_refiner(template)
    assert n_params(model) == total
    assert n_params(model, trainable=True) == trainable
    assert len(model.state_dict()) == keys


def test_block_parameter_formula():
    # 2 stages: conv inputs 18g in all, 8 biases and 8 PReLU slopes of g: 162 g^2 + 16 g.
    for g in (2, 5, 32):
        assert n_params(SubbandClique(g, 2)) == 162 * g * g + 16 * g
        assert n_params(SubbandClique(g, 1)) == 81 * g * g + 8 * g
    assert n_params(SubbandClique(32, 2)) == 166_400


def expected_keys(blocks: int, stages: int) -> list[str]:
    keys = ["preConv0.weight", "preConv0.bias", "preConv1.weight", "preConv1.bias"]
    for i in range(blocks):
        for stage in range(1, stages + 1):
            for node in SLOTS:
                keys += [f"CliqueBlock.{i}.F{node}{stage}.{p}" for p in ("0.weight", "0.bias", "1.weight")]
    keys += ["funsion.body.0.weight", "funsion.body.0.bias", "tail.body.0.weight", "tail.body.0.bias"]
    return keys + ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_state_dict_keys_in_their_order(template):
    blocks, _, stages = TEMPLATES[template]
    assert list(pdasr_refiner(template).state_dict()) == expected_keys(blocks, stages)


def test_clique_key_names_and_shapes():
    state = pdasr_refiner("Clique").state_dict()
    assert {key.split(".")[0] for key in state} == {
        "sub_mean", "add_mean", "preConv0", "preConv1", "CliqueBlock", "funsion", "tail"
    }  # fmt: skip
    block_keys = [key for key in state if key.startswith("CliqueBlock.")]
    assert {int(key.split(".")[1]) for key in block_keys} == set(range(15))
    assert {key.split(".")[2] for key in block_keys} == {f"F{n}{s}" for n in SLOTS for s in (1, 2)}
    assert {key.split(".", 3)[3] for key in block_keys} == {"0.weight", "0.bias", "1.weight"}

    g = 32
    shapes = {
        "sub_mean.weight": (3, 3, 1, 1),
        "sub_mean.bias": (3,),
        "add_mean.weight": (3, 3, 1, 1),
        "add_mean.bias": (3,),
        "preConv0.weight": (g, 12, 3, 3),
        "preConv0.bias": (g,),
        "preConv1.weight": (4 * g, g, 3, 3),
        "preConv1.bias": (4 * g,),
        "funsion.body.0.weight": (g, 4 * g * 15, 1, 1),
        "funsion.body.0.bias": (g,),
        "tail.body.0.weight": (12, g, 3, 3),
        "tail.body.0.bias": (12,),
    }
    for i in range(15):
        for stage, widths in UPDATE_WIDTH.items():
            for node, width in widths.items():
                prefix = f"CliqueBlock.{i}.F{node}{stage}"
                shapes[f"{prefix}.0.weight"] = (g, width * g, 3, 3)
                shapes[f"{prefix}.0.bias"] = (g,)
                shapes[f"{prefix}.1.weight"] = (g,)
    assert {key: tuple(value.shape) for key, value in state.items()} == shapes
    assert tuple(state["CliqueBlock.14.Fll2.0.weight"].shape) == (32, 128, 3, 3)


def test_mean_shift_is_frozen_and_exact():
    model = pdasr_refiner("light_Clique-")
    mean = torch.tensor(RGB_MEAN, dtype=torch.float32)
    for shift, sign in ((model.sub_mean, -1), (model.add_mean, 1)):
        assert not shift.weight.requires_grad and not shift.bias.requires_grad
        assert torch.equal(shift.weight.flatten(1), torch.eye(3))
        assert torch.equal(shift.bias, sign * 255 * mean)
    torch.testing.assert_close(model.add_mean.bias, torch.tensor([114.444, 111.4605, 103.02]))
    x = torch.rand(1, 3, 4, 4) * 255
    assert torch.equal(model.sub_mean(x), x + model.sub_mean.bias.view(1, 3, 1, 1))


def test_units_and_activations():
    model = PdasrRefiner(blocks=2, g=4, stages=2)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.bias is not None, name
            assert module.padding == (module.kernel_size[0] // 2,) * 2, name
        if isinstance(module, torch.nn.PReLU):
            assert module.num_parameters == 4 and torch.all(module.weight == 0.25), name
    assert isinstance(model.funsion.body[1], torch.nn.LeakyReLU)
    assert model.funsion.body[1].negative_slope == 0.01
    assert model.funsion.body[0].kernel_size == (1, 1) and len(model.tail.body) == 1


# One 2x2 patch per output pixel: a, b top row, c, d bottom row.
#   channel 0: patches (1, 2 / 16, 32) and (4, 8 / 64, 128); channel 1: (0, 1 / 0, 0) and (0, 0 / 0, 3)
HAND_IMAGE = torch.tensor(
    [[[[1.0, 2, 4, 8], [16, 32, 64, 128]], [[0.0, 1, 0, 0], [0, 0, 0, 3]]]]
)  # (1, 2, 2, 4)
# LL = (a+b+c+d)/2, HL = (-a+b-c+d)/2, LH = (-a-b+c+d)/2, HH = (a-b-c+d)/2; channel k*C + c.
HAND_BANDS = torch.tensor(
    [[25.5, 102], [0.5, 1.5], [8.5, 34], [0.5, 1.5], [22.5, 90], [-0.5, 1.5], [7.5, 30], [-0.5, 1.5]]
).view(1, 8, 1, 2)


def test_dwt_band_layout():
    assert torch.equal(haar_dwt(HAND_IMAGE), HAND_BANDS)
    assert torch.equal(haar_idwt(HAND_BANDS), HAND_IMAGE)


def test_idwt_basis():
    # A unit coefficient of each band at pixel (0, 0) of channel 0 of C = 1 gives its 2x2 pattern.
    patterns = {
        0: [[0.5, 0.5], [0.5, 0.5]],  # LL
        1: [[-0.5, 0.5], [-0.5, 0.5]],  # HL: right minus left
        2: [[-0.5, -0.5], [0.5, 0.5]],  # LH: bottom minus top
        3: [[0.5, -0.5], [-0.5, 0.5]],  # HH
    }
    for band, pattern in patterns.items():
        y = torch.zeros(1, 4, 2, 3)
        y[0, band, 0, 0] = 1
        x = haar_idwt(y)
        assert x.shape == (1, 1, 4, 6)
        assert torch.equal(x[0, 0, :2, :2], torch.tensor(pattern))
        assert torch.count_nonzero(x) == 4


def test_dwt_round_trip_and_orthonormal():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 10, generator=gen, dtype=torch.float64)
    y = haar_dwt(x)
    assert y.shape == (2, 12, 3, 5)
    torch.testing.assert_close(haar_idwt(y), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(haar_dwt(haar_idwt(y)), y, rtol=0, atol=1e-12)
    torch.testing.assert_close(y.norm(), x.norm())
    assert haar_idwt(y.float()).dtype == torch.float32


@pytest.mark.parametrize("shape", [(1, 3, 5, 4), (1, 3, 4, 7)])
def test_dwt_rejects_odd_sizes(shape):
    with pytest.raises(ValueError, match="even"):
        haar_dwt(torch.zeros(shape))


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Nonzero biases and varied PReLU slopes, so every term shows in a comparison."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "mean" not in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)


def block_by_hand(state, prefix, x, g, stages, res_scale):
    """Their ResClique's equations, one line per update."""

    def F_(name, *inputs):
        w, b, a = (state[f"{prefix}F{name}.{k}"] for k in ("0.weight", "0.bias", "1.weight"))
        return F.prelu(F.conv2d(torch.cat(inputs, dim=1), w, b, padding=1), a)

    ll0, lh0, hl0, hh0 = x.split(g, dim=1)
    ll1 = F_("ll1", ll0)
    lh1 = F_("lh1", ll1, lh0)
    hl1 = F_("hl1", ll1, hl0)
    hh1 = F_("hh1", ll1, lh1, hl1, hh0)
    if stages == 1:
        return torch.cat((ll1, lh1, hl1, hh1), dim=1) * res_scale + x
    hh2 = F_("hh2", hh1)
    hl2 = F_("hl2", hl1, hh2)
    lh2 = F_("lh2", lh1, hh2)
    ll2 = F_("ll2", ll1, lh2, hl2, hh2)
    return torch.cat((ll2, lh2, hl2, hh2), dim=1) * res_scale + x


@pytest.mark.parametrize("stages", [1, 2])
def test_block_equations(stages):
    g = 3
    block = SubbandClique(g, stages, res_scale=0.5).double()
    randomize(block, stages)
    x = torch.randn(2, 4 * g, 5, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    expected = block_by_hand(block.state_dict(), "", x, g, stages, 0.5)
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stages", [1, 2])
def test_network_by_hand(stages):
    g, blocks = 2, 3
    model = PdasrRefiner(blocks, g, stages).double()
    randomize(model, 10 + stages)
    s = model.state_dict()
    x = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 255
    mean = s["add_mean.bias"].view(1, 3, 1, 1)  # 255 * mean rounded to float32, as theirs

    f0 = F.conv2d(haar_dwt(x - mean), s["preConv0.weight"], s["preConv0.bias"], padding=1)
    h = F.conv2d(f0, s["preConv1.weight"], s["preConv1.bias"], padding=1)
    outputs = []
    for i in range(blocks):
        h = block_by_hand(s, f"CliqueBlock.{i}.", h, g, stages, 1)
        outputs.append(h)
    fused = F.leaky_relu(
        F.conv2d(torch.cat(outputs, 1), s["funsion.body.0.weight"], s["funsion.body.0.bias"])
    )
    bands = F.conv2d(fused + f0, s["tail.body.0.weight"], s["tail.body.0.bias"], padding=1)
    expected = haar_idwt(bands) + mean

    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-9)


def test_no_image_skip():
    # The output is built from the tail's sub-bands alone: a zero tail gives 255*mean everywhere.
    model = pdasr_refiner("light_Clique-")
    with torch.no_grad():
        model.tail.body[0].weight.zero_()
        model.tail.body[0].bias.zero_()
    y = model(torch.rand(1, 3, 8, 8) * 255)
    assert torch.equal(y, model.add_mean.bias.view(1, 3, 1, 1).expand(1, 3, 8, 8))


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_forward_shape(template):
    model = pdasr_refiner(template).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 8, 8) * 255)
    assert y.shape == (1, 3, 8, 8) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown template"):
        pdasr_refiner("Clique+")
