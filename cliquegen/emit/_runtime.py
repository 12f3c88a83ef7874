"""Code that runs inside every model, whichever emitter built it.

The constructors hold the one initialisation policy: the FX emitter calls them, and the
source emitter copies their text verbatim into each generated module (which imports only
torch), so both build the same parameters from the same random stream.  ``clique_update``
is the update of generated source; the FX emitter writes the same steps as graph nodes.

Everything here may use only ``torch``, ``F`` (torch.nn.functional) and ``nn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shared_weight(shape: tuple[int, int, int, int]) -> nn.Parameter:
    """A W_ij: one conv weight (out, in, kernel, kernel) reused by every stage."""
    weight = nn.Parameter(torch.empty(shape))
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    return weight


def conv2d(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Conv2d:
    """A bias-free convolution, initialised like the W_ij."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def linear(in_features: int, out_features: int) -> nn.Linear:
    """A fully connected layer with a zero bias."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.bias)
    return layer


#: How each kind of declared module (cliquegen.ir.MODULE_KINDS) is built from its arguments.
CONSTRUCTORS = {
    "weight": shared_weight,
    "conv2d": conv2d,
    "batch_norm": nn.BatchNorm2d,
    "linear": linear,
    "dropout": nn.Dropout,
}


def clique_update(
    inputs: list[torch.Tensor],
    weights: list[torch.Tensor],
    bn: nn.BatchNorm2d,
    padding: int,
    dropout: nn.Module | None = None,
    bottleneck: tuple[nn.BatchNorm2d, nn.Conv2d] | None = None,
) -> torch.Tensor:
    """X_j = g(sum_i W_ij * X_i) as one convolution over the concatenated inputs.

    BN -> ReLU over cat(inputs), then a convolution whose weight is cat(weights) along the
    input channels (each W_ij is shared by every stage that uses it), [dropout], and with a
    bottleneck: BN -> ReLU -> the layer's own conv [-> dropout].
    """
    h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)  # (B, sum C_i, H, W)
    h = F.relu(bn(h))
    weight = weights[0] if len(weights) == 1 else torch.cat(weights, 1)
    h = F.conv2d(h, weight, None, 1, padding)  # (B, k, H, W)
    if dropout is not None:
        h = dropout(h)
    if bottleneck is not None:
        bottleneck_bn, bottleneck_conv = bottleneck
        h = bottleneck_conv(F.relu(bottleneck_bn(h)))
        if dropout is not None:
            h = dropout(h)
    return h
