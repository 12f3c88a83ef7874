"""An independent, plainly written eager CliqueNet, straight from the equations of docs/paper.md.

It shares nothing with the compiler but the parameter names (the state_dict contract), so
the compiled models can be checked against it.  ``weight(name, stage)`` lets a test hand
each stage its own copy of a shared weight, to see every stage's contribution to a gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cliquegen.spec.model import BlockConfig, Spec

WeightFn = Callable[[str, int], torch.Tensor]


def reference_forward(
    spec: Spec,
    state: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    training: bool = False,
    weight: WeightFn | None = None,
    record: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The network's logits; ``record`` (when given) receives every block tensor by its
    Program name: ``b1_x0``, ``b1_x3_s2``."""
    state = {key: value.clone() if "running" in key else value for key, value in state.items()}
    weight = weight or (lambda name, stage: state[name])

    def bn(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            h,
            state[f"{prefix}.running_mean"],
            state[f"{prefix}.running_var"],
            state[f"{prefix}.weight"],
            state[f"{prefix}.bias"],
            training=training,
            momentum=spec.norm.momentum,
            eps=spec.norm.eps,
        )

    def bn_relu(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return F.relu(bn(prefix, h))

    def linear(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, state[f"{prefix}.weight"], state[f"{prefix}.bias"])

    def update(
        t: int, block: BlockConfig, j: int, stage: int, terms: list[tuple[int, torch.Tensor]]
    ) -> torch.Tensor:
        """X_j(stage) of block t from its equation's terms [(i, X_i)]."""
        own = "" if block.share_weights else f"_s{stage}"  # untied: each stage its own weights
        terms = sorted(terms, key=lambda term: term[0])  # X0 first, then ascending layers
        inputs = torch.cat([value for _, value in terms], 1)
        w = torch.cat([weight(f"block{t}.w{i}_{j}{own}", stage) for i, _ in terms], 1)
        out = F.conv2d(bn_relu(f"block{t}.bn{j}_s{stage}", inputs), w, padding=w.shape[-1] // 2)
        if block.bottleneck:
            w3 = weight(f"block{t}.bottleneck{j}{own}.weight", stage)
            out = F.conv2d(bn_relu(f"block{t}.bottleneck_bn{j}_s{stage}", out), w3, padding=w3.shape[-1] // 2)
        return out

    def newest(X: dict[int, dict[int, torch.Tensor]], stage: int, n: int) -> list[torch.Tensor]:
        """Each layer's newest value after `stage` (a partial stage leaves some at stage - 1)."""
        return [X[stage][j] if j in X[stage] else X[stage - 1][j] for j in range(1, n + 1)]

    if spec.stem.kind == "cifar":
        h = F.conv2d(x, state["stem.conv.weight"], padding=1)
    else:
        h = F.conv2d(x, state["stem.conv.weight"], stride=2, padding=3)
        h = F.max_pool2d(bn_relu("stem.bn", h), 3, 2, 1)

    pooled = []
    for b, block in enumerate(spec.resolved_blocks()):
        t, n, last = b + 1, block.layers, block.stages
        x0 = h
        if record is not None:
            record[f"b{t}_x0"] = x0
        X: dict[int, dict[int, torch.Tensor]] = {}  # X[stage][layer]

        for stage in range(1, last + 1):
            X[stage] = {}
            order = list(block.order)
            updated = order[: block.partial] if stage == last and block.partial is not None else order
            for j in updated:
                before = order[: order.index(j)]
                after = order[order.index(j) + 1 :]
                if stage == 1:  # X_j(1) = g(W0j*X0 + sum_{i before j} Wij*Xi(1))
                    terms = [(0, x0)] + [(i, X[1][i]) for i in before]
                else:  # X_j(k) = g(sum_{i before j} Wij*Xi(k) + sum_{m after j} Wmj*Xm(k-1))
                    terms = [(i, X[stage][i]) for i in before] + [(m, X[stage - 1][m]) for m in after]
                X[stage][j] = update(t, block, j, stage, terms)
                if record is not None:
                    record[f"b{t}_x{j}_s{stage}"] = X[stage][j]

        def tensors(refs: tuple, X0: torch.Tensor = x0, X: dict = X, n: int = n) -> torch.Tensor:
            """cat of X0 and each layer's newest value after each listed stage."""
            return torch.cat([t for r in refs for t in ([X0] if r == "x0" else newest(X, r, n))], 1)

        if spec.head.kind == "last":  # BN, ReLU, pool over the last block's feature only
            if t == len(spec.blocks):
                pooled.append(bn_relu("head.bn", tensors(block.feature)).mean((2, 3)))
        else:
            feature = tensors(block.feature)
            if spec.head.compression:
                feature = F.conv2d(
                    bn_relu(f"head.compress{t}.bn", feature), state[f"head.compress{t}.conv.weight"]
                )
            pooled.append(bn_relu(f"head.bn{t}", feature).mean((2, 3)))

        if t < len(spec.blocks):
            h = tensors(block.transit)
            h = F.conv2d(bn_relu(f"transition{t}.bn", h), state[f"transition{t}.conv.weight"])
            if spec.transition.attention:
                gate = F.relu(linear(f"transition{t}.attention.fc1", h.mean((2, 3))))
                gate = torch.sigmoid(linear(f"transition{t}.attention.fc2", gate))
                h = h * gate[:, :, None, None]
            h = F.avg_pool2d(h, 2)
    return linear("classifier", torch.cat(pooled, 1))
