"""PDASR's refinement network, re-stated as a test oracle for the ``pdasr`` weight format.

PDASR (Zhang, Ji, Hao, Yao, ECCV 2022) refines an already upscaled RGB image in [0, 255]
with a stack of residual sub-band clique blocks over Haar wavelet coefficients.  This module
re-states that network in our own words from what the public code computes
(github.com/Yuehan717/PDASR, commit 41acc74bb5e667e017e7e047cb12eaa88a9162eb:
``src/model/cliquenet.py`` for ``ResClique`` and ``CliqueNet``, ``src/model/common.py`` for
``MeanShift`` and ``Conv2dWithActivation``, ``src/common/wavelet.py`` for the Haar
transforms, ``src/template_P.py`` for the templates ``Clique``, ``Clique-`` and
``light_Clique-``).  It is a test oracle, not part of the package, and imports nothing from
cliquegen.

What it keeps exactly: the module attribute names, hence their ``state_dict`` keys
(``funsion`` is their spelling) and key order; the frozen mean-shift convolutions, which
``parameters()`` counts and ``state_dict`` holds; every convolution's bias and padding; PReLU
per channel (slopes start at 0.25); LeakyReLU slope 0.01; ``res_scale``; the Haar band order
and the order of every floating-point sum, so that outputs agree with theirs bit for bit on
float32 inputs.  Modules are created in their order, so ``torch.manual_seed(s)`` before
construction also gives their initial weights.

Where it differs on purpose: their inverse transform allocates a float32 buffer on CUDA, so it
fails without a GPU and returns float32 whatever the input; here it follows the input's device
and dtype.  Their ``scale`` argument (stored, never read) is left out.
"""

from __future__ import annotations

import torch
from torch import nn

#: template name -> (blocks, features g, stages), from their ``template_P.py``; res_scale is 1.
TEMPLATES = {
    "Clique": (15, 32, 2),
    "Clique-": (15, 32, 1),
    "light_Clique-": (10, 32, 1),
}

#: their ``MeanShift`` defaults: DIV2K RGB mean, std 1, images in [0, rgb_range = 255].
RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255

SLOTS = ("ll", "lh", "hl", "hh")  # block input slices, in channel order

#: Each stage of a block: (node, sources) in update order; a source is (node, stage) and the
#: sources are concatenated in the order listed.  A node reads its own previous value: last in
#: stage 1, first in stage 2.  LH and HL never read each other.
SCHEDULE = {
    1: (
        ("ll", (("ll", 0),)),
        ("lh", (("ll", 1), ("lh", 0))),
        ("hl", (("ll", 1), ("hl", 0))),
        ("hh", (("ll", 1), ("lh", 1), ("hl", 1), ("hh", 0))),
    ),
    2: (
        ("hh", (("hh", 1),)),
        ("hl", (("hl", 1), ("hh", 2))),
        ("lh", (("lh", 1), ("hh", 2))),
        ("ll", (("ll", 1), ("lh", 2), ("hl", 2), ("hh", 2))),
    ),
}


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), band-major: channel k*C + c is band k of channel c,
    bands LL, HL, LH, HH.  With a, b the top and c, d the bottom row of a 2x2 patch:
    LL = (a+b+c+d)/2, HL = (-a+b-c+d)/2, LH = (-a-b+c+d)/2, HH = (a-b-c+d)/2."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"Haar DWT needs even height and width, got {tuple(x.shape[-2:])}")
    half = x / 2
    a, b = half[..., 0::2, 0::2], half[..., 0::2, 1::2]
    c, d = half[..., 1::2, 0::2], half[..., 1::2, 1::2]
    # Each band sums left column (top, bottom) then right column, as theirs does.
    ll = a + c + b + d
    hl = -a - c + b + d
    lh = -a + c - b + d
    hh = a - c - b + d
    return torch.cat((ll, hl, lh, hh), dim=1)


def haar_idwt(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`haar_dwt`: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    ll, hl, lh, hh = (band / 2 for band in y.chunk(4, dim=1))
    a = ll - hl - lh + hh  # top left
    b = ll + hl - lh - hh  # top right
    c = ll - hl + lh - hh  # bottom left
    d = ll + hl + lh + hh  # bottom right
    top = torch.stack((a, b), dim=-1).flatten(-2)  # (B, C, h, 2w)
    bottom = torch.stack((c, d), dim=-1).flatten(-2)
    return torch.stack((top, bottom), dim=-2).flatten(-3, -2)  # (B, C, 2h, 2w)


class FrozenMeanShift(nn.Conv2d):
    """A 1x1 conv 3 -> 3 fixed to x + sign * 255 * mean; its weight and bias are parameters
    with requires_grad False, as theirs are (so ``parameters()`` counts their 12 elements)."""

    def __init__(self, sign: int):
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            # the product rounded to float32, as theirs
            self.bias.copy_(sign * RGB_RANGE * torch.tensor(RGB_MEAN, dtype=torch.float32))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


def conv_prelu(cin: int, g: int) -> nn.Sequential:
    """One update F: conv3x3 (bias, same padding) -> PReLU per channel; keys ``0.*``, ``1.weight``."""
    return nn.Sequential(nn.Conv2d(cin, g, 3, padding=1, bias=True), nn.PReLU(g))


class ConvThen(nn.Module):
    """A conv with an optional activation, kept under ``body`` (keys ``body.0.*``)."""

    def __init__(self, cin: int, cout: int, kernel: int, act: nn.Module | None):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=True)]
        if act is not None:
            layers.append(act)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SubbandClique(nn.Module):
    """Their ``ResClique``: input (B, 4g, h, w) split into [ll | lh | hl | hh], the updates of
    :data:`SCHEDULE`, output cat(final ll, lh, hl, hh) * res_scale + input."""

    def __init__(self, g: int, stages: int, res_scale: float = 1):
        super().__init__()
        if stages not in (1, 2):
            raise ValueError(f"stages must be 1 or 2, got {stages}")
        self.g, self.stages, self.res_scale = g, stages, res_scale
        for stage in range(1, stages + 1):
            sources = dict(SCHEDULE[stage])
            for node in SLOTS:  # registered in slot order (their key order), not update order
                self.add_module(f"F{node}{stage}", conv_prelu(g * len(sources[node]), g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = {(node, 0): x[:, i * self.g : (i + 1) * self.g] for i, node in enumerate(SLOTS)}
        for stage in range(1, self.stages + 1):
            for node, sources in SCHEDULE[stage]:
                inputs = [value[source] for source in sources]
                h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)
                value[node, stage] = getattr(self, f"F{node}{stage}")(h)
        out = torch.cat([value[node, self.stages] for node in SLOTS], dim=1)
        return out.mul(self.res_scale) + x


class PdasrRefiner(nn.Module):
    """Their ``CliqueNet`` with 3 colours: (B, 3, H, W) in [0, 255], H and W even -> same shape.

    x - 255*mean -> DWT (12 ch, H/2) -> preConv0 3x3 12->g (= f0) -> preConv1 3x3 g->4g
    -> blocks (4g each) -> cat of all block outputs -> funsion 1x1 4gB->g -> LeakyReLU(0.01)
    -> + f0 -> tail 3x3 g->12 -> IDWT -> + 255*mean.  No skip from the input image."""

    def __init__(self, blocks: int, g: int, stages: int, res_scale: float = 1):
        super().__init__()
        # Created in their order (preConv0, preConv1, blocks, funsion, tail, sub_mean, add_mean):
        # the state_dict keys come out in that order and a seed gives their initial weights.
        self.preConv0 = nn.Conv2d(12, g, 3, padding=1, bias=True)
        self.preConv1 = nn.Conv2d(g, 4 * g, 3, padding=1, bias=True)
        self.CliqueBlock = nn.ModuleList(SubbandClique(g, stages, res_scale) for _ in range(blocks))
        self.funsion = ConvThen(4 * g * blocks, g, 1, nn.LeakyReLU(0.01))
        self.tail = ConvThen(g, 12, 3, None)
        self.sub_mean = FrozenMeanShift(-1)
        self.add_mean = FrozenMeanShift(+1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.preConv0(haar_dwt(self.sub_mean(x)))  # (B, g, H/2, W/2)
        h = self.preConv1(f0)  # (B, 4g, H/2, W/2)
        outputs = []
        for block in self.CliqueBlock:
            h = block(h)
            outputs.append(h)
        h = self.funsion(torch.cat(outputs, dim=1)) + f0
        return self.add_mean(haar_idwt(self.tail(h)))


def pdasr_refiner(template: str) -> nn.Module:
    """The refiner of one of their templates: "Clique", "Clique-" or "light_Clique-"."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; one of {sorted(TEMPLATES)}")
    blocks, g, stages = TEMPLATES[template]
    return PdasrRefiner(blocks, g, stages, res_scale=1)


__all__ = [
    "RGB_MEAN",
    "SCHEDULE",
    "TEMPLATES",
    "PdasrRefiner",
    "SubbandClique",
    "haar_dwt",
    "haar_idwt",
    "pdasr_refiner",
]
