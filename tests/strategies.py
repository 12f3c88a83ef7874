"""Hypothesis strategies: small random clique specs covering every option."""

from __future__ import annotations

from hypothesis import strategies as st

from cliquegen.spec import Spec


@st.composite
def block_dicts(draw, *, max_layers: int = 6) -> dict:
    layers = draw(st.integers(2, max_layers))
    stages = draw(st.integers(1, 4))
    schedule: dict = {"stages": stages}
    if stages >= 2 and draw(st.booleans()):
        schedule["partial"] = draw(st.integers(0, layers))
    if draw(st.booleans()):
        schedule["order"] = draw(st.permutations(list(range(1, layers + 1))))
    stage_refs = draw(st.lists(st.integers(1, stages), min_size=1, max_size=2, unique=True))
    feature = (["x0"] if draw(st.booleans()) else []) + stage_refs
    transit = draw(st.integers(1, stages))
    if max(stage_refs + [transit]) < stages:  # the last stage must feed something
        transit = stages
    return {
        "layers": layers,
        "channels": draw(st.integers(2, 5)),
        "kernel": draw(st.sampled_from([1, 3])),
        "bottleneck": draw(st.booleans()),
        "schedule": schedule,
        "feature": feature,
        "transit": transit,
    }


@st.composite
def specs(draw, *, max_blocks: int = 3, max_layers: int = 6) -> Spec:
    blocks = draw(st.lists(block_dicts(max_layers=max_layers), min_size=1, max_size=max_blocks))
    last = blocks[-1]
    if last["schedule"]["stages"] not in last["feature"]:  # the last block transits nothing,
        last["feature"].append(last["schedule"]["stages"])
    last["transit"] = draw(st.integers(1, 4))  # so its transit is ignored, even beyond its stages
    imagenet = draw(st.booleans())
    size = 32 if imagenet else 8
    return Spec.model_validate(
        {
            "name": "random-spec",
            "input": {"channels": draw(st.integers(1, 3)), "height": size, "width": size},
            "num_classes": draw(st.integers(2, 4)),
            "stem": {"kind": "imagenet" if imagenet else "cifar", "channels": draw(st.integers(2, 6))},
            "blocks": blocks,
            "transition": {"attention": draw(st.booleans())},
            "head": {"compression": draw(st.booleans())},
        }
    )
