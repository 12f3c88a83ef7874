"""Writing new variants: a spec from a blank file (defaults that follow the last stage, the stem
of a large input), `cliquegen new`, `--set` and `sweep --grid`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cliquegen.cli.main import main
from cliquegen.compiler.lower import compile_spec
from cliquegen.compiler.summary import summarize
from cliquegen.errors import SpecError
from cliquegen.models import build_fx
from cliquegen.spec.loader import load_spec
from cliquegen.spec.shipped import resolve_spec

# What a newcomer writes first: three blocks of five layers, k=20, three stages, nothing else.
THREE_STAGES = """\
name: my-net
num_classes: 10
defaults:
  schedule: {stages: 3}
blocks:
  - {layers: 5, channels: 20}
  - {layers: 5, channels: 20}
  - {layers: 5, channels: 20}
"""


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(text)
    return caught.value


# --- feature and transit follow the block's last stage -----------------------------------------


def test_three_stage_spec_from_a_blank_file_validates_and_runs(tmp_path: Path, capsys) -> None:
    path = tmp_path / "my-net.yaml"
    path.write_text(THREE_STAGES)
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok (my-net)" in capsys.readouterr().out
    spec = load_spec(path)
    for block in spec.resolved_blocks():
        assert (block.stages, block.feature) == (3, ("x0", 3))
        assert block.transit == (3,)
    model = build_fx(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_last_is_the_same_network_as_the_stage_number() -> None:
    written = THREE_STAGES.replace("defaults:\n", "defaults:\n  feature: [x0, 3]\n  transit: 3\n")
    by_number, by_word = compile_spec(load_spec(written)), compile_spec(load_spec(THREE_STAGES))
    assert by_number.program == by_word.program
    assert summarize(by_number).params == summarize(by_word).params


def test_last_follows_each_block_own_stage_count() -> None:
    text = THREE_STAGES.replace(
        "  - {layers: 5, channels: 20}\n  - {layers: 5, channels: 20}\n  - {layers: 5, channels: 20}\n",
        "  - {layers: 5, channels: 20, schedule: {stages: 1}}\n"
        "  - {layers: 5, channels: 20, transit: [x0, last]}\n"
        "  - {layers: 5, channels: 20, schedule: {stages: 2}, feature: [1, last]}\n",
    )
    blocks = load_spec(text).resolved_blocks()
    assert [(b.stages, b.feature, b.transit) for b in blocks] == [
        (1, ("x0", 1), (1,)),
        (3, ("x0", 3), ("x0", 3)),
        (2, (1, 2), (2,)),
    ]


ABLATION = """\
name: ablation
num_classes: 10
defaults:
  feature: [x0, {feature}]
  transit: {transit}
blocks:
  - {{layers: 5, channels: 36}}
  - {{layers: 5, channels: 36}}
  - {{layers: 5, channels: 36}}
"""


@pytest.mark.parametrize(
    ("feature", "transit", "stages", "shipped"),
    [
        (1, 1, [1, 1, 1], "cliquenet-i-i"),
        (1, 2, [2, 2, 1], "cliquenet-i-ii"),  # the last block transits nothing: Stage II unused
        (2, 2, [2, 2, 2], "cliquenet-ii-ii"),
        (2, 1, [2, 2, 2], None),
    ],
)
def test_unwritten_stages_follow_what_feature_and_transit_read(feature, transit, stages, shipped) -> None:
    spec = load_spec(ABLATION.format(feature=feature, transit=transit))
    assert [block.stages for block in spec.resolved_blocks()] == stages
    if shipped:  # the paper's Tab. 1 cells, as the shipped ablation specs write them out

        def blocks(spec):
            return [
                (b.layers, b.stages, b.feature, b.transit if b.index < 2 else ())
                for b in spec.resolved_blocks()
            ]

        assert blocks(spec) == blocks(resolve_spec(shipped))


def test_derived_stages_are_blamed_on_the_reference_that_asks_for_them() -> None:
    text = "name: a\nnum_classes: 3\ndefaults:\n  transit: 2\nblocks:\n  - {layers: 1, channels: 4}\n"
    text += "  - {layers: 3, channels: 4}\n"
    (diagnostic,) = _error(text).diagnostics
    assert (diagnostic.line, diagnostic.column) == (4, 12)
    assert diagnostic.message == (
        "stage II needs at least 2 layers, but block 1 has 1 layer; write `schedule: {stages: 1}`"
    )


def test_the_unused_stage_message_reads_right_and_gives_the_lines_to_write() -> None:
    text = THREE_STAGES.replace("defaults:\n", "defaults:\n  feature: [x0, 2]\n  transit: 2\n")
    messages = [d.message for d in _error(text).diagnostics]
    assert messages[0] == (
        "stage 3 of block 1 is computed but neither `feature` nor `transit` uses it; "
        "write `stages: 2`, or `transit: last`, or `feature: [x0, last]`"
    )
    assert messages[-1] == (
        "stage 3 of block 3 is computed but `feature` does not use it (the last block has no "
        "transition); write `stages: 2`, or `feature: [x0, last]`"
    )


@pytest.mark.parametrize(
    ("written", "fix"),
    [
        ("feature: [x0, 4]", "write `feature: [x0, last]`, or `schedule: {stages: 4}`"),
        ("transit: [x0, 2, 5]", "write `transit: [x0, 2, last]`, or `schedule: {stages: 5}`"),
        ("feature: [x0, 3, last]", "write `feature: [x0, 3]`"),
        ("schedule: {partial: 9}", "write `partial: 5` or less"),
        ("schedule: {stages: 1, partial: 2}", "remove `partial: 2`, or write `stages: 2`"),
    ],
)
def test_every_stage_message_gives_the_line_to_write(written: str, fix: str) -> None:
    text = THREE_STAGES.replace("channels: 20}", f"channels: 20, {written}}}", 1)
    (diagnostic,) = _error(text).diagnostics
    assert diagnostic.line == 6
    assert diagnostic.message.endswith(fix), diagnostic.message


def test_every_shipped_default_is_written_out_or_means_the_same() -> None:
    # `last` is stage 2 for the built-in two stages: a spec that omits feature/transit is unchanged
    two = load_spec(
        "name: a\nnum_classes: 3\nblocks:\n  - {layers: 3, channels: 4}\n  - {layers: 3, channels: 4}\n"
    )
    assert [(b.feature, b.transit) for b in two.resolved_blocks()] == [(("x0", 2), (2,))] * 2


# --- the stem of a large input ------------------------------------------------------------------


def test_large_input_without_a_stem_kind_says_what_to_write() -> None:
    text = "name: big\ninput: {height: 224, width: 224}\nnum_classes: 100\nblocks: [{layers: 3, channels: 8}]"
    (diagnostic,) = _error(text).diagnostics
    assert (diagnostic.line, diagnostic.column) == (2, 8)
    assert "`stem: {kind: imagenet, channels: 64}`" in diagnostic.message
    assert "the first block sees 56x56" in diagnostic.message
    assert "`stem: {kind: cifar, channels: 64}`" in diagnostic.message
    stem_without_kind = text.replace("num_classes", "stem: {channels: 32}\nnum_classes")
    (diagnostic,) = _error(stem_without_kind).diagnostics
    assert (diagnostic.line, diagnostic.column) == (3, 7)  # at the stem that lacks its kind
    assert "`stem: {kind: imagenet, channels: 32}`" in diagnostic.message
    for kind in ("imagenet", "cifar"):
        assert (
            load_spec(text.replace("num_classes", f"stem: {{kind: {kind}}}\nnum_classes")).stem.kind == kind
        )


def test_small_inputs_keep_the_builtin_stem() -> None:
    text = "name: small\ninput: {height: 64, width: 64}\nnum_classes: 10\nblocks: [{layers: 3, channels: 8}]"
    assert load_spec(text).stem.kind == "cifar"
