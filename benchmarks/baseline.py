"""The clique network as the authors wrote it, built from any Spec, to time against.

Their PyTorch ImageNet code (docs/paper.md, "The authors' PyTorch ImageNet code")
keeps every W_ij as an ``nn.Conv2d`` in a ``conv_param`` ModuleList of ``(n+1)**2``
entries, one BatchNorm per layer and stage in ``forward_bn`` / ``loop_bn`` (``_b`` for the
bottleneck), and, on every forward, concatenates both the inputs and the weights of each
update with ``torch.cat`` before BN -> ReLU -> conv.  This module keeps that structure and
those habits, generalised just enough for the CIFAR specs too (a 3x3 W_ij without
bottleneck, the CIFAR stem, dropout, an optional compression and attention): the Stage I +
Stage II schedule in ascending order, the block feature and transit of the spec.

:func:`official_state_dict` renames a cliquegen ``state_dict`` to this module's names, so
both compute the same function from the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliquegen.spec.model import BlockConfig, Spec


class Attention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * gate.view(gate.shape[0], gate.shape[1], 1, 1)


class Transition(nn.Module):
    def __init__(self, channels: int, attention: bool, dropout: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else None
        if attention:
            self.attention = Attention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.relu(self.bn(x)))
        if self.dropout is not None:
            h = self.dropout(h)
        if hasattr(self, "attention"):
            h = self.attention(h)
        return F.avg_pool2d(h, 2)


class Compress(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.relu(self.bn(x)))
        return h if self.dropout is None else self.dropout(h)


class GlobalPool(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(x)).mean((2, 3))


class CliqueBlock(nn.Module):
    """``conv_param[i*(n+1)+j]`` is W_ij (i = 0: X0); None where no W_ij exists."""

    def __init__(self, block: BlockConfig, in_channels: int):
        super().__init__()
        n, k, kernel = block.layers, block.channels, block.conv_kernel
        self.block = block
        self.padding = kernel // 2
        self.conv_param = nn.ModuleList(
            None if j == 0 or i == j else nn.Conv2d(in_channels if i == 0 else k, k, kernel, bias=False)
            for i, j in (divmod(index, n + 1) for index in range((n + 1) ** 2))
        )
        self.forward_bn = nn.ModuleList(nn.BatchNorm2d(in_channels + j * k) for j in range(n))
        self.loop_bn = nn.ModuleList(nn.BatchNorm2d((n - 1) * k) for _ in range(n))
        if block.bottleneck:
            pad = block.kernel // 2
            self.conv_param_bottle = nn.ModuleList(
                nn.Conv2d(k, k, block.kernel, padding=pad, bias=False) for _ in range(n)
            )
            self.forward_bn_b = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(n))
            self.loop_bn_b = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(n))
        self.dropout = nn.Dropout(block.dropout) if block.dropout else None

    def layer(self, j: int, inputs: dict[int, torch.Tensor], stage: int) -> torch.Tensor:
        n = self.block.layers
        order = sorted(inputs)
        bn = (self.forward_bn if stage == 1 else self.loop_bn)[j - 1]
        h = F.relu(bn(torch.cat([inputs[i] for i in order], 1)))
        weight = torch.cat([self.conv_param[i * (n + 1) + j].weight for i in order], 1)
        h = F.conv2d(h, weight, padding=self.padding)
        if self.dropout is not None:
            h = self.dropout(h)
        if self.block.bottleneck:
            bn_b = (self.forward_bn_b if stage == 1 else self.loop_bn_b)[j - 1]
            h = self.conv_param_bottle[j - 1](F.relu(bn_b(h)))
            if self.dropout is not None:
                h = self.dropout(h)
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, block = self.block.layers, self.block
        stages: dict[int, dict[int, torch.Tensor]] = {0: {0: x}, 1: {}}
        for j in range(1, n + 1):  # X_j(1) = g(W0j*X0 + sum_{i<j} Wij*Xi(1))
            stages[1][j] = self.layer(j, {0: x, **{i: stages[1][i] for i in range(1, j)}}, 1)
        if block.stages == 2:
            newest = dict(stages[1])
            for j in range(1, n + 1):  # X_j(2) = g(sum_{i != j} Wij * newest Xi)
                newest[j] = self.layer(j, {i: newest[i] for i in range(1, n + 1) if i != j}, 2)
            stages[2] = newest

        def stage(ref: str | int) -> list[torch.Tensor]:
            return [x] if ref == "x0" else [stages[ref][j] for j in range(1, n + 1)]

        feature = torch.cat([t for ref in block.feature for t in stage(ref)], 1)
        (carried,) = block.transit  # one stage (the constructor checks)
        transit = torch.cat(stage(carried), 1) if carried <= block.stages else None
        return feature, transit


class OfficialStyleCliqueNet(nn.Module):
    """Stem, clique blocks, transitions, the multi-scale head and ``fc``, as the authors' module."""

    def __init__(self, spec: Spec):
        super().__init__()
        blocks = spec.resolved_blocks()
        for block in blocks:
            if (
                block.stages > 2
                or block.partial is not None
                or block.order != tuple(range(1, block.layers + 1))
            ):
                raise ValueError(f"{spec.name}: the authors' code runs Stage I + II in ascending order only")
            if (
                not block.share_weights
                or block.bottleneck_width != 1
                or len(block.transit) != 1
                or "x0" in block.transit
            ):
                raise ValueError(f"{spec.name}: the authors' code shares the W_ij and transits one stage")
        if spec.transition.compression != 1 or spec.head.kind != "multiscale":
            raise ValueError(f"{spec.name}: the authors' code has full transitions and the multi-scale head")
        self.imagenet = spec.stem.kind == "imagenet"
        c = spec.stem.channels
        kernel, stride, padding = (7, 2, 3) if self.imagenet else (3, 1, 1)
        self.fir_trans = nn.Conv2d(spec.input.channels, c, kernel, stride, padding, bias=False)
        if self.imagenet:
            self.fir_bn = nn.BatchNorm2d(c)
        self.list_block = nn.ModuleList()
        self.list_trans = nn.ModuleList()
        self.list_compress = nn.ModuleList()
        self.list_gb = nn.ModuleList()
        features = 0
        for b, block in enumerate(blocks):
            n, k = block.layers, block.channels
            self.list_block.append(CliqueBlock(block, c))
            feature = sum(c if ref == "x0" else n * k for ref in block.feature)
            if b + 1 < len(blocks):
                self.list_trans.append(Transition(n * k, spec.transition.attention, block.dropout))
            if spec.head.compression:
                self.list_compress.append(Compress(feature, block.dropout))
                feature //= 2
            self.list_gb.append(GlobalPool(feature))
            features += feature
            c = n * k
        self.fc = nn.Linear(features, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fir_trans(x)
        if self.imagenet:
            h = F.max_pool2d(F.relu(self.fir_bn(h)), 3, 2, 1)
        pooled = []
        for b, block in enumerate(self.list_block):
            feature, transit = block(h)
            if self.list_compress:
                feature = self.list_compress[b](feature)
            pooled.append(self.list_gb[b](feature))
            if b < len(self.list_trans):
                h = self.list_trans[b](transit)
        return self.fc(torch.cat(pooled, 1))


def official_names(spec: Spec) -> dict[str, str]:
    """cliquegen module path -> this module's path, for every module with tensors."""
    names = {"stem.conv": "fir_trans", "stem.bn": "fir_bn", "classifier": "fc"}
    blocks = spec.resolved_blocks()
    for b, block in enumerate(blocks):
        t, n = b + 1, block.layers
        prefix = f"list_block.{b}"
        for j in range(1, n + 1):
            for i in range(n + 1):
                if i != j:
                    names[f"block{t}.w{i}_{j}"] = f"{prefix}.conv_param.{i * (n + 1) + j}.weight"
            names[f"block{t}.bn{j}_s1"] = f"{prefix}.forward_bn.{j - 1}"
            names[f"block{t}.bn{j}_s2"] = f"{prefix}.loop_bn.{j - 1}"
            names[f"block{t}.bottleneck_bn{j}_s1"] = f"{prefix}.forward_bn_b.{j - 1}"
            names[f"block{t}.bottleneck_bn{j}_s2"] = f"{prefix}.loop_bn_b.{j - 1}"
            names[f"block{t}.bottleneck{j}"] = f"{prefix}.conv_param_bottle.{j - 1}"
        for part in ("bn", "conv", "attention.fc1", "attention.fc2"):
            names[f"transition{t}.{part}"] = f"list_trans.{b}.{part}"
        names[f"head.compress{t}.bn"] = f"list_compress.{b}.bn"
        names[f"head.compress{t}.conv"] = f"list_compress.{b}.conv"
        names[f"head.bn{t}"] = f"list_gb.{b}.bn"
    return names


def official_state_dict(state: dict[str, torch.Tensor], spec: Spec) -> dict[str, torch.Tensor]:
    """A cliquegen ``state_dict`` under this module's names (strict: every key is mapped)."""
    names = official_names(spec)
    out = {}
    for key, value in state.items():
        if key in names:  # a bare W_ij
            out[names[key]] = value
            continue
        module, _, tensor = key.rpartition(".")
        out[f"{names[module]}.{tensor}"] = value
    return out


def baseline_model(spec: Spec, state: dict[str, torch.Tensor] | None = None) -> OfficialStyleCliqueNet:
    """The authors'-style model of ``spec``, loaded strictly from a cliquegen ``state_dict``."""
    model = OfficialStyleCliqueNet(spec)
    for module in model.modules():  # the spec's BatchNorm settings (the authors' TF code: eps 1e-3)
        if isinstance(module, nn.BatchNorm2d):
            module.eps, module.momentum = spec.norm.eps, spec.norm.momentum
    if state is not None:
        model.load_state_dict(official_state_dict(state, spec), strict=True)
    return model
