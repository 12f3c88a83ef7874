"""Code that runs inside every model, whichever emitter built it.

The constructors hold the one initialisation policy: the FX emitter calls them, and the
source emitter copies their text verbatim into each generated module (which imports only
torch), so both build the same parameters from the same random stream.  ``clique_update``
is the update of generated source; the FX emitter writes the same steps as graph nodes.

Everything here may use only ``torch``, ``F`` (torch.nn.functional), ``nn`` and
``checkpoint`` (torch.utils.checkpoint).  :class:`TimmModel` holds timm's model interface,
the same for both emitters' models, which supply ``forward_blocks``.

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
    sqrt(2 / fan_in)), fan_in = in_channels * kernel * kernel of this weight alone."""
    if init == "truncated-normal-fan-in":
        std = (2.6 / weight[0].numel()) ** 0.5
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
    else:
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")


#: How each kind of declared module (cliquegen.ir.MODULE_KINDS) is built from its arguments.
CONSTRUCTORS = {
    "weight": shared_weight,
    "conv2d": conv2d,
    "batch_norm": nn.BatchNorm2d,
    "linear": linear,
    "dropout": nn.Dropout,
    "identity": nn.Identity,
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


def take_blocks(
    num_blocks: int, indices: int | list[int] | tuple[int, ...] | None = None, output_fmt: str = "NCHW"
) -> tuple[list[int], int]:
    """The blocks ``forward_intermediates`` returns, as timm selects them: ``None`` every block,
    ``n`` the last n, a list those blocks (0-based, negative from the end); and the largest."""
    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt {output_fmt!r}: the block maps are (B, C, H, W), output_fmt 'NCHW'")
    if indices is None:
        indices = num_blocks
    if isinstance(indices, int):
        if not 0 < indices <= num_blocks:
            raise ValueError(f"indices={indices}: the last n blocks need 1 <= n <= {num_blocks}")
        take = list(range(num_blocks - indices, num_blocks))
    else:
        take = []
        for index in indices:
            if not -num_blocks <= index < num_blocks:
                raise ValueError(f"block index {index} is out of range: the model has {num_blocks} blocks")
            take.append(index % num_blocks)
        if not take:
            raise ValueError("indices is empty: name at least one block")
    return take, max(take)


def head_map(maps: list[torch.Tensor]) -> torch.Tensor:
    """The unpooled features of a head that reads several blocks: each branch's map (B, C_b,
    H_b, W_b) average-pooled to the largest size that divides every branch's (the last block's,
    when the others are multiples of it) and concatenated along the channels.  Each pooling
    window covers as many pixels as any other of its branch, so the map's global average pool
    is the branches' pooled features, concatenated (up to the rounding of the sums)."""
    if len(maps) == 1:
        return maps[0]
    height, width = 0, 0
    for x in maps:
        height, width = common_divisor(height, x.shape[2]), common_divisor(width, x.shape[3])
    pooled: list[torch.Tensor] = []
    for x in maps:
        kernel = [x.shape[2] // height, x.shape[3] // width]
        pooled.append(x if kernel == [1, 1] else F.avg_pool2d(x, kernel))
    return torch.cat(pooled, 1)


def common_divisor(a: int, b: int) -> int:
    """The greatest common divisor of ``a`` and ``b`` (Euclid's algorithm; ``a`` when ``b`` is 0)."""
    while b:
        a, b = b, a % b
    return a


def pruned_multiscale(x: torch.Tensor) -> torch.Tensor:
    """``forward_features`` of a head that reads every block, once blocks are pruned: none."""
    raise RuntimeError(
        "the model was pruned by prune_intermediate_layers, and its multi-scale head reads every "
        "block: only forward_intermediates(..., intermediates_only=True) runs"
    )


class TimmModel(nn.Module):
    """timm's model interface, the same for every cliquegen model, whichever emitter built it.

    The model supplies ``forward_blocks`` and these attributes: ``feature_info`` (timm's record
    of each block's map), ``num_blocks`` (the blocks it runs), ``multiscale`` (whether the head
    reads every block), ``global_pool`` (``"avg"``, or ``""`` for none), ``num_features``
    (channels of ``forward_features``' map), ``head_hidden_size`` (width of ``forward_head(...,
    pre_logits=True)``), ``in_chans``, ``pruned`` and the ``classifier`` module.

    timm's head convention: ``forward_features`` returns the unpooled map (B, num_features, H',
    W'); ``forward_head`` pools it and classifies.  A multi-scale head's map is ``head_map`` of
    its branches, whose global average pool is the pooled features up to rounding: ``forward``
    pools each branch itself, as the network is defined.
    """

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` calls this first.  cliquegen's FX models script; generated source
        does not, and says so here rather than in TorchScript's words."""
        raise RuntimeError(
            "generated source does not script: its block methods bind update = partial(clique_update, "
            "...), which TorchScript cannot compile; script the FX model, which has the same state_dict "
            '(cliquegen.create_model(spec, emit="fx"))'
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes), or the pooled features (B, num_features) without a classifier;
        without pooling or once pruned, ``forward_head(forward_features(x))``."""
        if self.global_pool == "avg" and not self.pruned:
            features = self.forward_blocks(x, self.num_blocks - 1, None, None)
            assert features is not None
            return self.classifier(features)
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled features (B, num_features, H', W'): what the head pools; after
        ``prune_intermediate_layers``, the map of the last block kept (a multi-scale head, which
        reads every block, has none then)."""
        if self.pruned:
            if self.multiscale:
                return pruned_multiscale(x)
            maps: list[torch.Tensor] = []
            self.forward_blocks(x, self.num_blocks - 1, maps, None)
            return maps[-1]
        head_maps: list[torch.Tensor] = []
        self.forward_blocks(x, self.num_blocks - 1, None, head_maps)
        return head_map(head_maps)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``forward_features``' map averaged over its positions and classified (B, classes), or
        (B, head_hidden_size) with ``pre_logits``; with ``global_pool`` ``""`` the map itself,
        classified at each position (B, classes, H', W')."""
        if self.global_pool == "avg":
            x = x.mean((2, 3))
            return x if pre_logits else self.classifier(x)
        return x if pre_logits else self.classifier(x.movedim(1, -1)).movedim(-1, 1)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The map (B, C, H, W) that each block ``indices`` selects hands on: to its transition,
        the last block's to the head (timm's selection: None every block, n the last n, a list
        those).  With ``forward_features``' map first, unless ``intermediates_only``: then no
        block after the last one selected runs.  ``norm`` and ``stop_early`` are accepted for
        timm's signature: no norm layer follows the blocks, and the features need every block."""
        take, last = take_blocks(len(self.feature_info), indices, output_fmt)
        maps: list[torch.Tensor] = []
        if intermediates_only:
            self.forward_blocks(x, last, maps, None)
            return [maps[index] for index in take]
        if self.pruned and self.multiscale:
            return pruned_multiscale(x), []
        head_maps: list[torch.Tensor] | None = None if self.pruned else []
        self.forward_blocks(x, self.num_blocks - 1, maps, head_maps)
        final = maps[-1] if head_maps is None else head_map(head_maps)  # forward_features' map
        return final, [maps[index] for index in take]

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Keep what the maps of the blocks ``indices`` selects need; returns their indices.  With
        the last block selected, only the classifier goes (``prune_head``): ``forward`` then
        returns ``forward_features``' map.  Else the later blocks, the head and the classifier go,
        and ``forward_features`` returns the last kept block's map (``num_features`` its
        channels), which a head that reads every block cannot.  ``prune_norm`` is timm's: the
        head's BatchNorm belongs to the features."""
        take, last = take_blocks(len(self.feature_info), indices)
        if last + 1 == len(self.feature_info):
            if prune_head:
                self.reset_classifier(0, "")
            return take
        self.remove_after_block(last)
        self.feature_info = self.feature_info[: last + 1]
        self.num_blocks = last + 1
        self.pruned = True
        if not self.multiscale:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        self.global_pool = ""
        self.classifier = nn.Identity().train(self.training)
        self.refresh_forward()
        return take

    def remove_after_block(self, last: int) -> None:
        """Delete the modules that running the blocks up to block ``last`` (0-based) does not use,
        as the model's ``unused_after_block`` lists them."""
        for path in self.unused_after_block[last]:
            owner = self
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            delattr(owner, name)

    def refresh_forward(self) -> None:
        """Called when the head changes: the generated model reads its attributes as it runs."""

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features if isinstance(self.classifier, nn.Linear) else 0

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier (zero bias) for ``num_classes`` classes, made where the model's
        parameters are; with 0, none.  ``global_pool``: ``"avg"`` (average over the positions)
        or ``""`` (no pooling); None keeps the model's."""
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool={global_pool!r}: choose 'avg' (average) or '' (no pooling)")
            self.global_pool = global_pool
        if num_classes:
            weight = next(self.parameters())
            classifier = linear(self.num_features, num_classes, device=weight.device, dtype=weight.dtype)
        else:
            classifier = nn.Identity()
        self.classifier = classifier.train(self.training)
        self.refresh_forward()

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups for timm's layer-wise learning rates: the stem, then each block with
        its transition; the head and the classifier come last."""
        return {"stem": r"^stem\.", "blocks": r"^(?:block|transition)(\d+)\."}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch ``memory_efficient``: recompute each clique update in the backward pass."""
        self.memory_efficient = enable
