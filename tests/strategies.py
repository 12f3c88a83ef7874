"""Hypothesis strategies: small random clique specs covering every option."""

from __future__ import annotations

from hypothesis import strategies as st

from cliquegen.spec.model import Spec


@st.composite
def stage_refs(draw, stages: int) -> list:
    """A feature or transit list: X0 or not, then one or two stages."""
    refs = draw(st.lists(st.integers(1, stages), min_size=1, max_size=2, unique=True))
    return (["x0"] if draw(st.booleans()) else []) + refs


@st.composite
def block_dicts(draw, *, max_layers: int = 6) -> dict:
    layers = draw(st.integers(2, max_layers))
    stages = draw(st.integers(1, 4))
    schedule: dict = {"stages": stages}
    if stages >= 2 and draw(st.booleans()):
        schedule["partial"] = draw(st.integers(0, layers))
    if draw(st.booleans()):
        schedule["order"] = draw(st.permutations(list(range(1, layers + 1))))
    feature = draw(stage_refs(stages))
    transit = draw(st.integers(1, stages) | stage_refs(stages))  # `transit: 2` or `[x0, 1]`
    used = [ref for ref in feature + ([transit] if isinstance(transit, int) else transit) if ref != "x0"]
    if max(used) < stages:  # the last stage must feed something
        transit = stages
    bottleneck = draw(st.booleans())
    block = {
        "layers": layers,
        "channels": draw(st.integers(2, 5)),
        "kernel": draw(st.sampled_from([1, 3])),
        "bottleneck": bottleneck,
        "share_weights": draw(st.booleans()),
        "schedule": schedule,
        "feature": feature,
        "transit": transit,
    }
    if bottleneck:
        block["bottleneck_width"] = draw(st.integers(1, 3))
    return block


@st.composite
def specs(draw, *, max_blocks: int = 3, max_layers: int = 6) -> Spec:
    blocks = draw(st.lists(block_dicts(max_layers=max_layers), min_size=1, max_size=max_blocks))
    last = blocks[-1]
    if last["schedule"]["stages"] not in last["feature"]:  # the last block transits nothing,
        last["feature"].append(last["schedule"]["stages"])
    last["transit"] = draw(st.integers(1, 4))  # so its transit is ignored, even beyond its stages
    kind = draw(st.sampled_from(["multiscale", "last"]))
    if kind == "last":  # the head reads only the last block's feature: the others feed the transit
        for block in blocks[:-1]:
            del block["feature"]
            transit = [block["transit"]] if isinstance(block["transit"], int) else block["transit"]
            if block["schedule"]["stages"] not in transit:
                block["transit"] = transit + [block["schedule"]["stages"]]
    imagenet = draw(st.booleans())
    size = 32 if imagenet else 8
    return Spec.model_validate(
        {
            "name": "random-spec",
            "input": {"channels": draw(st.integers(1, 3)), "height": size, "width": size},
            "num_classes": draw(st.integers(2, 4)),
            "stem": {"kind": "imagenet" if imagenet else "cifar", "channels": draw(st.integers(2, 6))},
            "defaults": {"feature": ["x0", 1]},  # what a block without its own feature inherits
            "blocks": blocks,
            "transition": {
                "attention": draw(st.booleans()),
                "compression": draw(st.sampled_from([1.0, 0.5, 0.75])),
            },
            "head": {"kind": kind, "compression": kind == "multiscale" and draw(st.booleans())},
        }
    )
