"""timm's model interface, the same code for both emitters' models.

:class:`TimmModel` holds the methods timm calls; a model supplies ``forward_blocks`` (the FX
model runs functions compiled from its graph, generated source calls its block methods).
Generated source copies this class before its model class, and the functions here under the
runtime's heading, so they may use only what :mod:`._runtime`'s code may use, and its
``linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._runtime import linear


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
