"""The authors' PyTorch ImageNet CliqueNet, rewritten from their code (docs/paper.md) for the weights tests.

Module names, parameter shapes and the forward pass follow the layout docs/paper.md describes
("The authors' PyTorch ImageNet checkpoint layout"): ``fir_trans``/``fir_bn``/``fir_pool``,
``list_block`` (``conv_param`` with ``(n+1)**2`` entries, ``None`` where no W_ij exists),
``list_trans``, ``list_compress``, ``list_gb`` and ``fc``.  It imports nothing from
cliquegen, so a checkpoint saved from it stands in for the authors' published one, and
equal logits after ``cliquegen import-weights`` show cliquegen computes what their code does.

Like theirs, it only runs at 224x224: the attention and global pools have fixed sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: (filters per layer, layers) of the four blocks and the attention flag (docs/paper.md, ImageNet).
ARCHITECTURES = {
    "cliquenet-s0": ([36, 64, 100, 80], [5, 6, 6, 6], False),
    "cliquenet-s1": ([36, 80, 120, 100], [5, 6, 6, 6], False),
    "cliquenet-s2": ([36, 80, 150, 120], [5, 5, 6, 6], True),
    "cliquenet-s3": ([40, 80, 160, 160], [6, 6, 6, 6], True),
}


class Attention(nn.Module):
    """Squeeze-and-excitation with a fixed-size average pool."""

    def __init__(self, channels: int, map_size: int):
        super().__init__()
        self.pool = nn.AvgPool2d(map_size)
        self.fc1 = nn.Linear(channels, channels // 2)
        self.fc2 = nn.Linear(channels // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.pool(x).flatten(1)  # (B, C)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate.view(gate.shape[0], gate.shape[1], 1, 1)


class Transition(nn.Module):
    """BN -> ReLU -> 1x1 conv (C -> C) -> [attention] -> 2x2 average pool."""

    def __init__(self, attention: bool, map_size: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.use_attention = attention
        if attention:
            self.attention = Attention(channels, map_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(F.relu(self.bn(x)))
        if self.use_attention:
            h = self.attention(h)
        return self.pool(h)


class Compress(nn.Module):
    """BN -> ReLU -> 1x1 conv (C -> C/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels // 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class GlobalPool(nn.Module):
    """BN -> ReLU -> average pool over the whole (fixed-size) map."""

    def __init__(self, map_size: int, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AvgPool2d(map_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(x)))


class CliqueBlock(nn.Module):
    """n layers of k filters; ``conv_param[i*(n+1)+j]`` is W_ij (i = 0: X0), 1x1, no bias.

    ``with_w00`` also builds ``conv_param[0]`` as an (unused) k -> k conv, as some versions
    of the authors' code did; their checkpoints then carry it.
    """

    def __init__(self, in_channels: int, k: int, n: int, with_w00: bool = False):
        super().__init__()
        self.n = n
        convs: list[nn.Module | None] = []
        for index in range((n + 1) ** 2):
            i, j = divmod(index, n + 1)
            if j == 0 or i == j:
                convs.append(nn.Conv2d(k, k, 1, bias=False) if index == 0 and with_w00 else None)
            else:
                convs.append(nn.Conv2d(in_channels if i == 0 else k, k, 1, bias=False))
        self.conv_param = nn.ModuleList(convs)
        self.conv_param_bottle = nn.ModuleList(nn.Conv2d(k, k, 3, padding=1, bias=False) for _ in range(n))
        self.forward_bn = nn.ModuleList(nn.BatchNorm2d(in_channels + j * k) for j in range(n))
        self.forward_bn_b = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(n))
        self.loop_bn = nn.ModuleList(nn.BatchNorm2d((n - 1) * k) for _ in range(n))
        self.loop_bn_b = nn.ModuleList(nn.BatchNorm2d(k) for _ in range(n))

    def w(self, i: int, j: int) -> torch.Tensor:
        return self.conv_param[i * (self.n + 1) + j].weight

    def layer(self, j: int, inputs: dict[int, torch.Tensor], bn: nn.Module, bn_b: nn.Module) -> torch.Tensor:
        """BN-ReLU over the inputs concatenated in ascending order, 1x1 conv with the
        concatenated W_ij, then BN-ReLU-3x3 (the layer's bottleneck conv)."""
        order = sorted(inputs)
        h = F.relu(bn(torch.cat([inputs[i] for i in order], 1)))
        h = F.conv2d(h, torch.cat([self.w(i, j) for i in order], 1))
        return F.conv2d(F.relu(bn_b(h)), self.conv_param_bottle[j - 1].weight, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n
        stage1: dict[int, torch.Tensor] = {}
        for j in range(1, n + 1):  # X_j(1) = g(W0j*X0 + sum_{i<j} Wij*Xi(1))
            inputs = {0: x, **{i: stage1[i] for i in range(1, j)}}
            stage1[j] = self.layer(j, inputs, self.forward_bn[j - 1], self.forward_bn_b[j - 1])
        newest = dict(stage1)
        for j in range(1, n + 1):  # X_j(2) = g(sum_{i != j} Wij * newest Xi)
            inputs = {i: newest[i] for i in range(1, n + 1) if i != j}
            newest[j] = self.layer(j, inputs, self.loop_bn[j - 1], self.loop_bn_b[j - 1])
        stage2 = torch.cat([newest[j] for j in range(1, n + 1)], 1)
        return torch.cat([x, stage2], 1), stage2  # block feature (X0, Stage II), transit


class OfficialCliqueNet(nn.Module):
    """The ImageNet network: stem, blocks, transitions, compressed multi-scale head, fc."""

    def __init__(
        self,
        channels: list[int],
        layers: list[int],
        attention: bool,
        stem_channels: int = 64,
        num_classes: int = 1000,
        with_w00: bool = False,
    ):
        super().__init__()
        self.fir_trans = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.fir_bn = nn.BatchNorm2d(stem_channels)
        self.fir_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.list_block = nn.ModuleList()
        self.list_trans = nn.ModuleList()
        self.list_compress = nn.ModuleList()
        self.list_gb = nn.ModuleList()
        map_size, block_in, features = 56, stem_channels, 0
        for b, (k, n) in enumerate(zip(channels, layers, strict=True)):
            self.list_block.append(CliqueBlock(block_in, k, n, with_w00))
            feature = block_in + n * k
            if b + 1 < len(channels):
                self.list_trans.append(Transition(attention, map_size, n * k))
            self.list_compress.append(Compress(feature))
            self.list_gb.append(GlobalPool(map_size, feature // 2))
            features += feature // 2
            block_in, map_size = n * k, map_size // 2
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fir_pool(F.relu(self.fir_bn(self.fir_trans(x))))
        pooled = []
        for b, block in enumerate(self.list_block):
            feature, transit = block(h)
            pooled.append(self.list_gb[b](self.list_compress[b](feature)).flatten(1))
            if b < len(self.list_trans):
                h = self.list_trans[b](transit)
        return self.fc(torch.cat(pooled, 1))


def official_cliquenet(name: str, with_w00: bool = False) -> OfficialCliqueNet:
    channels, layers, attention = ARCHITECTURES[name]
    return OfficialCliqueNet(channels, layers, attention, with_w00=with_w00)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Seeded random weights and BatchNorm statistics that keep activations O(1)."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * fan_in**-0.5)
                if module.bias is not None:
                    module.bias.copy_(uniform(module.bias, -0.1, 0.1))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight, 0.5, 1.5))
                module.bias.copy_(uniform(module.bias, -0.2, 0.2))
                module.running_mean.copy_(uniform(module.running_mean, -0.2, 0.2))
                module.running_var.copy_(uniform(module.running_var, 0.5, 2.0))
                module.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=generator)))
    return model


def training_checkpoint(model: nn.Module, epoch: int = 90) -> dict:
    """What their training script saves: the ``nn.DataParallel`` state_dict (``module.``
    keys), the epoch, best top-1 and the SGD optimizer state (with momentum buffers)."""
    wrapped = nn.DataParallel(model)  # without GPUs it only wraps: keys gain `module.`
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9)
    for p in wrapped.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # zero gradients: the momentum buffers exist, the weights do not move
    for p in wrapped.parameters():
        p.grad = None
    return {
        "epoch": epoch,
        "arch": "cliquenet",
        "state_dict": wrapped.state_dict(),
        "best_prec1": 75.99,
        "optimizer": optimizer.state_dict(),
    }
