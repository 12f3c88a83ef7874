"""Code that runs inside every model, whichever emitter built it.

The constructors hold the one initialisation policy: the FX emitter calls them, and the
source emitter copies their text verbatim into each generated module (which imports only
torch), so both build the same parameters from the same random stream.  ``clique_update``
is the update of generated source; the FX emitter writes the same steps as graph nodes.

Everything here may use only ``torch``, ``F`` (torch.nn.functional), ``nn`` and
``checkpoint`` (torch.utils.checkpoint).  timm's model interface, the same for both
emitters' models, is :mod:`._interface`.

TorchScript: ``torch.jit.script`` compiles the forward pass through these functions.  A module
passed to a function is typed :class:`Layer` (TorchScript types each module instance apart, so
a function can take modules only through an interface) and called with :func:`call`; where
the eager code reads what an interface does not show (BatchNorm's statistics, a checkpoint),
a function begins with its TorchScript path under ``if torch.jit.is_scripting():``, which
TorchScript alone compiles.  Scripted code therefore neither folds BatchNorm in inference nor
recomputes in the backward pass (``memory_efficient``).

Speed: ReLU runs in place on BatchNorm's fresh output (BN's backward reads its input, not
its output), the model converts its input to channels-last memory once at entry (the
input op's ``memory_format``), which every later op keeps, and in eager inference
``bn_relu`` normalises an update's inputs straight into one tensor instead of concatenating
them first (``can_fold``, ``folded_bn_relu``).
"""

from __future__ import annotations

import inspect
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def shared_weight(
    shape: tuple[int, int, int, int],
    init: str = "kaiming-normal-fan-out",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Parameter:
    """A W_ij: one conv weight (out, in, kernel, kernel), reused by every stage that reads it
    (a block with ``share_weights: false`` has one per stage instead).  Like every constructor
    here and torch's own, it makes its tensors on ``device`` in ``dtype`` (torch's defaults
    when None)."""
    weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
    init_conv_weight(weight, init)
    return weight


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    padding: int,
    init: str = "kaiming-normal-fan-out",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Conv2d:
    """A bias-free convolution, initialised like the W_ij."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding, bias=False, device=device, dtype=dtype
    )
    init_conv_weight(conv.weight, init)
    return conv


def linear(
    in_features: int,
    out_features: int,
    init: str = "kaiming-uniform",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Linear:
    """A fully connected layer with a zero bias; its weight as nn.Linear draws it, or Glorot
    uniform (``glorot-uniform``, TensorFlow's ``xavier_initializer()``)."""
    layer = nn.Linear(in_features, out_features, device=device, dtype=dtype)
    if init == "glorot-uniform":
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def init_conv_weight(weight: torch.Tensor, init: str) -> None:
    """``kaiming-normal-fan-out``: He normal over the fan-out (PyTorch's usual choice);
    ``truncated-normal-fan-in``: TensorFlow's ``variance_scaling_initializer()``, a normal
    with std sqrt(1.3 * 2 / fan_in) cut at two std (the cut leaves a std of about
    sqrt(2 / fan_in)); ``kaiming-uniform``: ``nn.Conv2d``'s own draw, uniform in
    +-1 / sqrt(fan_in).  fan_in = in_channels * kernel * kernel of this weight alone."""
    if init == "truncated-normal-fan-in":
        std = (2.6 / weight[0].numel()) ** 0.5
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
    elif init == "kaiming-uniform":
        nn.init.kaiming_uniform_(weight, a=5**0.5)
    else:
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


def padded_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    bias: bool = True,
    init: str = "kaiming-normal-fan-out",
) -> nn.Conv2d:
    """A convolution with "same" padding, initialised like the W_ij; its bias starts at zero."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
    init_conv_weight(conv.weight, init)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def zero_bias(channels: int) -> nn.Parameter:
    """A node's conv bias (B, channels) beside its W_ij, starting at zero."""
    return nn.Parameter(torch.zeros(channels))


def constant(values: tuple[float, ...]) -> torch.Tensor:
    """Fixed per-channel values (1, C, 1, 1), kept as a buffer outside the state_dict."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


#: How each kind of declared module (cliquegen.ir.MODULE_KINDS) is built from its arguments.
CONSTRUCTORS = {
    "weight": shared_weight,
    "conv2d": conv2d,
    "batch_norm": nn.BatchNorm2d,
    "linear": linear,
    "dropout": nn.Dropout,
    "identity": nn.Identity,
    "conv": padded_conv,
    "bias": zero_bias,
    "prelu": nn.PReLU,
    "constant": constant,
}


def makes_tensors(kind: str) -> bool:
    """Whether the constructor of a module kind takes ``device`` and ``dtype`` (those that make
    parameters or buffers)."""
    return "device" in inspect.signature(CONSTRUCTORS[kind]).parameters


class Layer(nn.Module):
    """What a function may do with a module it is given: call it on a tensor (:func:`call`).
    Scripting cliquegen's FX models makes it a TorchScript interface (:func:`as_interface`)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        pass


def as_interface() -> None:
    """Make :class:`Layer` a TorchScript interface (once), so that ``torch.jit.script`` compiles
    the functions that take modules: TorchScript gives each module instance a type of its own."""
    if not getattr(Layer, "__torch_script_interface__", False):
        with warnings.catch_warnings():  # torch marks TorchScript deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.interface(Layer)


def call(module: Layer, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; TorchScript calls an interface's forward itself."""
    if torch.jit.is_scripting():
        return module.forward(x)
    return module(x)


def bn_relu(inputs: list[torch.Tensor], bn: Layer) -> torch.Tensor:
    """ReLU(BN(cat(inputs))), (B, sum C_i, H, W); in eager inference, ``folded_bn_relu``."""
    if torch.jit.is_scripting():
        return F.relu(call(bn, torch.cat(inputs, 1)), inplace=True)
    if len(inputs) > 1 and can_fold(inputs, bn):
        return folded_bn_relu(inputs, bn)
    h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)
    return F.relu(bn(h), inplace=True)


def can_fold(inputs: list[torch.Tensor], bn: nn.BatchNorm2d) -> bool:
    """Whether BatchNorm may run as its running statistics' affine map: in eval mode, with
    autograd off, in eager execution (not scripting, tracing, torch.compile or export), with
    affine parameters and running statistics of the inputs' dtype."""
    return not (
        bn.training
        or torch.is_grad_enabled()
        or torch.jit.is_scripting()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or bn.running_mean is None
        or bn.running_var is None
        or bn.weight is None
        or bn.bias is None
        or any(x.dtype != bn.weight.dtype for x in inputs)
    )


def folded_bn_relu(inputs: list[torch.Tensor], bn: nn.BatchNorm2d) -> torch.Tensor:
    """``bn_relu`` in inference: BatchNorm is the per-channel map x * scale + shift, so each
    input is normalised straight into its channel slice of one new tensor (in the inputs'
    memory format) and the concatenation is no separate pass over the data."""
    x0 = inputs[0]
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    channels_last = x0.is_contiguous(memory_format=torch.channels_last) and not x0.is_contiguous()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    shape = (x0.shape[0], scale.shape[0], x0.shape[2], x0.shape[3])
    h = torch.empty(shape, dtype=x0.dtype, device=x0.device, memory_format=memory_format)
    start = 0
    for x in inputs:
        end = start + x.shape[1]
        a, b = scale[start:end].view(1, -1, 1, 1), shift[start:end].view(1, -1, 1, 1)
        torch.addcmul(b, x, a, out=h[:, start:end])  # x * a + b, into its channels
        start = end
    return h.relu_()


def bn_relu_conv(
    inputs: list[torch.Tensor],
    weight: torch.Tensor,
    bn: Layer,
    padding: int,
    recompute: bool = False,
) -> torch.Tensor:
    """conv(ReLU(BN(cat(inputs))), weight): the part of an update that sees every input.

    ``recompute`` (the backward pass of ``memory_efficient``) normalises with the batch
    statistics as the first pass did, and leaves the running statistics and
    ``num_batches_tracked`` as the first pass updated them.
    """
    if torch.jit.is_scripting():
        return F.conv2d(bn_relu(inputs, bn), weight, None, 1, padding)
    if recompute:  # copies of the running statistics take the update (momentum 0 leaves them as they are)
        h = inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)  # (B, sum C_i, H, W)
        mean, var = (None if t is None else t.clone() for t in (bn.running_mean, bn.running_var))
        h = F.relu(F.batch_norm(h, mean, var, bn.weight, bn.bias, True, 0.0, bn.eps), inplace=True)
    else:
        h = bn_relu(inputs, bn)
    return F.conv2d(h, weight, None, 1, padding)  # (B, k, H, W)


def update_steps(
    inputs: list[torch.Tensor],
    weight: torch.Tensor,
    bn: Layer,
    padding: int,
    dropout: Layer | None = None,
    bottleneck: tuple[Layer, Layer] | None = None,
    recompute: bool = False,
    last_dropout: bool = True,
) -> torch.Tensor:
    """The steps of one update: BN -> ReLU -> conv over cat(inputs) with the concatenated
    shared weight, [dropout], and with a bottleneck: BN -> ReLU -> the layer's own conv
    [-> dropout].  ``last_dropout=False`` stops after the last convolution."""
    h = bn_relu_conv(inputs, weight, bn, padding, recompute)
    if bottleneck is not None:
        if dropout is not None:
            h = call(dropout, h)
        bottleneck_bn, bottleneck_conv = bottleneck
        if torch.jit.is_scripting():  # the conv as a module: its stride is 1, its padding its own
            h = call(bottleneck_conv, bn_relu([h], bottleneck_bn))
        else:
            padding = bottleneck_conv.padding[0]
            h = bn_relu_conv([h], bottleneck_conv.weight, bottleneck_bn, padding, recompute)
    if dropout is not None and last_dropout:
        h = call(dropout, h)
    return h


def checkpointed_update(
    inputs: list[torch.Tensor],
    weight: torch.Tensor,
    bn: Layer,
    padding: int,
    dropout: Layer | None = None,
    bottleneck: tuple[Layer, Layer] | None = None,
) -> torch.Tensor:
    """``update_steps`` that, in training with inputs that need gradients, keeps none of its
    intermediates (the concatenation, BN and ReLU outputs) and recomputes them in backward
    (with the same dropout masks: checkpoint restores the random state).  The recomputation
    stops where the last convolution's input is rebuilt, so that convolution never runs twice:
    the dropout after it runs outside the checkpoint and keeps its mask in one byte per element
    (``byte_mask_dropout``).  Under torch.compile the steps run as they are: BatchNorm's
    statistics are a side effect its checkpoint cannot take, and its partitioner chooses what
    to recompute itself.  Scripted code runs the steps as they are."""
    if torch.jit.is_scripting():
        return update_steps(inputs, weight, bn, padding, dropout, bottleneck)
    if torch.compiler.is_compiling() or not (bn.training and any(x.requires_grad for x in inputs)):
        return update_steps(inputs, weight, bn, padding, dropout, bottleneck)
    return recomputed_update(inputs, weight, bn, padding, dropout, bottleneck)


def recomputed_update(
    inputs: list[torch.Tensor],
    weight: torch.Tensor,
    bn: nn.BatchNorm2d,
    padding: int,
    dropout: nn.Dropout | None = None,
    bottleneck: tuple[nn.BatchNorm2d, nn.Conv2d] | None = None,
) -> torch.Tensor:
    """``checkpointed_update`` in training: the steps under ``checkpoint``, the last dropout after."""
    calls = []

    def run(weight: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        steps = (list(inputs), weight, bn, padding, dropout, bottleneck, len(calls) > 1)
        return update_steps(*steps, last_dropout=False)

    h = checkpoint(run, weight, *inputs, use_reentrant=False)
    return h if dropout is None else byte_mask_dropout(h, dropout)


def byte_mask_dropout(h: torch.Tensor, dropout: nn.Dropout) -> torch.Tensor:
    """``dropout(h)`` whose backward keeps a bool mask instead of a float32 one.  On CPU
    nn.Dropout draws noise = bernoulli(1 - p) / (1 - p) into a tensor like ``h`` and keeps it
    for backward; this draws the same noise and keeps only where it is 0, so the random stream,
    the values and the gradients are those of nn.Dropout.  Elsewhere nn.Dropout itself, whose
    fused kernel keeps a bool mask already."""
    p = dropout.p
    if not (dropout.training and h.device.type == "cpu" and 0 < p < 1):
        return dropout(h)
    dropped = torch.empty_like(h).bernoulli_(1 - p) == 0  # nn.Dropout's draw, before its / (1 - p)
    scale = torch.ones((), dtype=h.dtype).div_(1 - p)  # the value its kept noise has
    return h.mul(scale).masked_fill_(dropped, 0)


def clique_update(
    inputs: list[torch.Tensor],
    weights: list[torch.Tensor],
    bn: Layer,
    padding: int,
    dropout: Layer | None = None,
    bottleneck: tuple[Layer, Layer] | None = None,
    memory_efficient: bool = False,
) -> torch.Tensor:
    """X_j = g(sum_i W_ij * X_i) as one convolution over the concatenated inputs.

    BN -> ReLU over cat(inputs), then a convolution whose weight is cat(weights) along the
    input channels (each W_ij is shared by every stage that uses it), [dropout], and with a
    bottleneck: BN -> ReLU -> the layer's own conv [-> dropout].  ``memory_efficient``
    recomputes these steps in the backward pass instead of storing their results.
    """
    weight = weights[0] if len(weights) == 1 else torch.cat(weights, 1)
    if memory_efficient:
        return checkpointed_update(inputs, weight, bn, padding, dropout, bottleneck)
    return update_steps(inputs, weight, bn, padding, dropout, bottleneck)


class CliqueBlock(nn.Module):
    """A clique block that runs its updates from a schedule: row (j, k) computes X_j(k) =
    g(sum_i W_ij * X_i) by ``clique_update``, over X0 in stage I and the newest value of every
    other layer, in the order of the rows.

    Its modules are those of the block written out update by update, with the same names,
    made in the same order (so a seed gives the same weights): ``dropout``, then for each row
    the W_ij it reads first (``w{i}_{j}``), ``bn{j}_s{k}`` over its inputs, and with a
    bottleneck ``bottleneck_bn{j}_s{k}`` and ``bottleneck{j}``; with ``share_weights=False``
    each stage has its own W_ij and bottleneck convolution (``w{i}_{j}_s{k}``,
    ``bottleneck{j}_s{k}``).  ``width``: channels of the W_ij (more than ``channels`` in a
    widened bottleneck); ``bottleneck``: the kernel of each layer's bottleneck convolution;
    ``device``, ``dtype``: where and in which dtype its parameters are made.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        schedule: list[tuple[int, int]],
        kernel: int = 3,
        width: int | None = None,
        bottleneck: int | None = None,
        share_weights: bool = True,
        dropout: float = 0.0,
        eps: float = 1e-5,
        momentum: float = 0.1,
        init: str = "kaiming-normal-fan-out",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.schedule = [(j, k) for j, k in schedule]
        self.share_weights = share_weights
        self.padding = kernel // 2
        self.bottleneck = bottleneck is not None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        width = channels if width is None else width
        updated: set[int] = set()
        for j, k in self.schedule:
            read = self.reads(j, k, updated)
            for i in read:
                if not hasattr(self, self.weight_name(i, j, k)):
                    shape = (width, in_channels if i == 0 else channels, kernel, kernel)
                    setattr(self, self.weight_name(i, j, k), shared_weight(shape, init, **dd))
            inputs = sum(in_channels if i == 0 else channels for i in read)
            setattr(self, f"bn{j}_s{k}", nn.BatchNorm2d(inputs, eps, momentum, **dd))
            if bottleneck is not None:
                setattr(self, f"bottleneck_bn{j}_s{k}", nn.BatchNorm2d(width, eps, momentum, **dd))
                if not hasattr(self, self.stage_name(f"bottleneck{j}", k)):
                    conv = conv2d(width, channels, bottleneck, 1, bottleneck // 2, init, **dd)
                    setattr(self, self.stage_name(f"bottleneck{j}", k), conv)
            updated.add(j)

    def reads(self, j: int, k: int, updated: set[int]) -> list[int]:
        """The layers X_j(k) reads, 0 for X0: X0 in stage I, and every other layer updated before."""
        return [0] * (k == 1) + sorted(updated - {j})

    def stage_name(self, name: str, k: int) -> str:
        return name if self.share_weights else f"{name}_s{k}"

    def weight_name(self, i: int, j: int, k: int) -> str:
        return self.stage_name(f"w{i}_{j}", k)

    def forward(self, x0: torch.Tensor, memory_efficient: bool = False) -> list[list[torch.Tensor]]:
        """The block's values by stage: ``[[X0], after stage I, after stage II, ...]``, each the
        newest value of every layer, X1 first."""
        newest = {0: x0}
        after = [[x0]]
        for row, (j, k) in enumerate(self.schedule):
            read = self.reads(j, k, set(newest) - {0})
            bottleneck = None
            if self.bottleneck:
                bottleneck = (
                    getattr(self, f"bottleneck_bn{j}_s{k}"),
                    getattr(self, self.stage_name(f"bottleneck{j}", k)),
                )
            newest[j] = clique_update(
                [newest[i] for i in read],
                [getattr(self, self.weight_name(i, j, k)) for i in read],
                getattr(self, f"bn{j}_s{k}"),
                self.padding,
                self.dropout,
                bottleneck,
                memory_efficient,
            )
            if row + 1 == len(self.schedule) or self.schedule[row + 1][1] != k:  # the stage is done
                after.append([newest[i] for i in sorted(newest) if i > 0])
        return after


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal Haar DWT: (B, C, H, W) -> (B, 4C, H/2, W/2), band-major (channel k*C + c
    is band k of channel c), bands LL, HL, LH, HH.  With a, b the top and c, d the bottom row
    of each 2x2 patch: LL = (a+b+c+d)/2, HL = (-a+b-c+d)/2, LH = (-a-b+c+d)/2,
    HH = (a-b-c+d)/2, each sum taken as a, c, b, d (the order of MWCNN's and PDASR's code)."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"the Haar DWT needs an even height and width, got {x.shape[-2]}x{x.shape[-1]}")
    half = x / 2
    a, b = half[:, :, 0::2, 0::2], half[:, :, 0::2, 1::2]
    c, d = half[:, :, 1::2, 0::2], half[:, :, 1::2, 1::2]
    return torch.cat((a + c + b + d, -a - c + b + d, -a + c - b + d, a - c - b + d), 1)


def haar_idwt(y: torch.Tensor) -> torch.Tensor:
    """The inverse of ``haar_dwt``: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    ll, hl, lh, hh = (band / 2 for band in y.chunk(4, 1))
    top = torch.stack((ll - hl - lh + hh, ll + hl - lh - hh), -1).flatten(-2)  # a, b: (B, C, h, 2w)
    bottom = torch.stack((ll - hl + lh - hh, ll + hl + lh + hh), -1).flatten(-2)  # c, d
    return torch.stack((top, bottom), -2).flatten(-3, -2)  # rows interleaved: (B, C, 2h, 2w)


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, scale H, scale W) as MATLAB's ``imresize(x, scale, 'bicubic')``:
    Keys' cubic kernel with a = -0.5; output pixel o of an axis samples the input at
    (o + 0.5) / scale - 0.5; taps outside the image mirrored back in (edge pixel repeated).
    Every ``scale``-th output pixel has the same taps, so each axis is one 5-tap convolution
    with ``scale`` output channels (the phases), interleaved."""

    def cubic(t: float) -> float:
        t = abs(t)
        return (1.5 * t - 2.5) * t * t + 1 if t <= 1 else ((-0.5 * t + 2.5) * t - 4) * t + 2 if t < 2 else 0.0

    shifts = [(2 * phase + 1 - scale) / (2 * scale) for phase in range(scale)]
    taps = [[cubic(shift - k) for k in range(-2, 3)] for shift in shifts]
    weight = torch.tensor(taps, dtype=x.dtype, device=x.device).unsqueeze(1)  # (scale, 1, 5)
    for _ in range(2):  # the width, then the height (the axes swapped)
        b, c, h, w = x.shape
        edged = torch.cat((x[..., :1], x, x[..., -1:]), -1)  # so that a 1-pixel row mirrors too
        mirrored = (edged[..., 1:3].flip(-1), x, edged[..., -3:-1].flip(-1))  # x1 x0 | x | x(w-1) x(w-2)
        rows = torch.cat(mirrored, -1).reshape(b * c * h, 1, w + 4)
        x = F.conv1d(rows, weight).transpose(1, 2).reshape(b, c, h, w * scale).transpose(2, 3)
    return x
