"""Writing new variants: a spec from a blank file (defaults that follow the last stage, the stem
of a large input), `cliquegen new`, `--set` and `sweep --grid`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import BaseModel

from cliquegen.cli.main import main
from cliquegen.compiler.lower import compile_spec
from cliquegen.compiler.summary import summarize
from cliquegen.errors import SpecError
from cliquegen.models import build_fx
from cliquegen.spec.loader import load_spec
from cliquegen.spec.model import Spec
from cliquegen.spec.network import ImageSpec
from cliquegen.spec.overrides import apply_assignments, parse_assignment, variant_name, variant_text
from cliquegen.spec.shipped import apply_overrides, resolve_spec, shipped_specs
from cliquegen.spec.template import starting_spec
from cliquegen.train.grid import expand, folder_name, parse_grid, split_values

ROOT = Path(__file__).resolve().parent.parent

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


# --- --set: a variant without a file ---------------------------------------------------------------


def _variant(base: str, *sets: str):
    return apply_assignments(resolve_spec(base), [parse_assignment(text) for text in sets])


def test_set_merges_as_create_model_overrides_do() -> None:
    sets = ["defaults.schedule.stages=1", "defaults.feature=[x0, last]", "defaults.transit=last"]
    spec = _variant("cliquenet-k36-t12", *sets, "stem={channels: 32}")
    assert spec.defaults.dropout == 0.2  # the mapping merged: its other keys stay
    assert (spec.stem.kind, spec.stem.channels) == ("cifar", 32)
    assert spec == apply_overrides(
        resolve_spec("cliquenet-k36-t12"),
        stem={"channels": 32},
        defaults={"schedule": {"stages": 1}, "feature": ["x0", "last"], "transit": "last"},
    )
    assert [(b.stages, b.feature, b.transit) for b in spec.resolved_blocks()] == [(1, ("x0", 1), (1,))] * 3


def test_set_addresses_blocks_from_one_and_all_of_them_with_a_star() -> None:
    spec = _variant("cliquenet-k36-t12", "blocks.*.channels=64", "blocks.2.layers=6")
    assert [(b.layers, b.channels) for b in spec.blocks] == [(4, 64), (6, 64), (4, 64)]
    spec = _variant("cliquenet-k36-t12", "blocks.3={layers: 5}")  # a mapping merges into the block
    assert (spec.blocks[2].layers, spec.blocks[2].channels) == (5, 36)


def test_set_null_removes_the_key_so_the_default_applies() -> None:
    # the Tab. 1 cell I+II from the II+II spec: unwritten stages follow feature and transit
    spec = _variant("cliquenet-ii-ii", "defaults.schedule=null", "defaults.feature=[x0, 1]")
    assert [b.stages for b in spec.resolved_blocks()] == [2, 2, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults.dropot=0.1",
            "--set defaults.dropot=0.1: error: unknown key `dropot`; did you mean `dropout`?",
        ),
        ("blocks.2.layers=0", "--set blocks.2.layers=0: error: `layers` must be at least 1, got 0"),
        (
            "blocks.4.layers=3",
            "--set blocks.4.layers=3: error: `blocks` has 3 entries; `blocks.4.layers` names entry 4",
        ),
        ("blocks.0.layers=3", "--set blocks.0.layers=3: error: `blocks.0.layers`: list entries count from 1"),
        ("defaults.dropout=yes", "--set defaults.dropout=yes: error: `yes` is read as true by YAML 1.1"),
        ("name.x=1", "--set name.x=1: error: `name` is the string 'cliquenet-k36-t12', which has no `x`"),
        ("dropout", "--set dropout: error: expected KEY=VALUE, e.g. `--set defaults.dropout=0.1`"),
        (
            "defaults.schedule.stages=3",
            "--set defaults.schedule.stages=3: error: stage 3 of block 1 is computed but neither "
            "`feature` nor `transit` uses it; write `stages: 2`, or `transit: last`, or ",
        ),
    ],
)
def test_set_mistakes_are_located_at_the_assignment(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        _variant("cliquenet-k36-t12", text)
    assert str(caught.value).splitlines()[0].startswith(message)


def test_a_problem_of_the_combination_names_every_assignment() -> None:
    with pytest.raises(SpecError) as caught:
        _variant("cliquenet-k36-t12", "head.kind=last", "defaults.transit=[x0, 1]")
    assert str(caught.value).startswith("--set head.kind=last --set defaults.transit=[x0, 1]: error: stage 2")


def test_variant_text_loads_back_to_the_variant() -> None:
    assignments = [parse_assignment("blocks.*.channels=64"), parse_assignment("defaults.feature=[x0, last]")]
    spec = apply_assignments(resolve_spec("cliquenet-k36-t12"), assignments)
    text = variant_text(spec, "cliquenet-k36-t12", assignments)
    assert text.startswith(
        "# cliquenet-k36-t12 --set blocks.*.channels=64 --set defaults.feature=[x0, last]\n"
    )
    assert load_spec(text) == spec
    assert variant_name(spec.name, assignments) == "cliquenet-k36-t12@channels=64,feature=[x0,last]"


def test_cli_commands_take_set(tmp_path: Path, capsys) -> None:
    assert main(["summary", "cliquenet-digits", "--set", "blocks.1.layers=2", "--json"]) == 0
    varied = json.loads(capsys.readouterr().out)
    assert varied["label"] == "cliquenet-digits@layers=2"
    assert (
        varied["params"] == summarize(compile_spec(_variant("cliquenet-digits", "blocks.1.layers=2"))).params
    )
    assert main(["summary", "cliquenet-digits", "--set", "defaults.dropot=0.1"]) == 2
    assert "--set defaults.dropot=0.1: error: unknown key `dropot`" in capsys.readouterr().err
    spec_file = str(ROOT / "specs/digits/cliquenet-digits.yaml")
    assert main(["build", spec_file, "--set", "blocks.1.layers=2", "-o", str(tmp_path)]) == 0
    module = (tmp_path / "cliquenet_digits.py").read_text()
    assert f"Spec: {spec_file} --set blocks.1.layers=2\n" in module
    assert main(["validate", spec_file, "--set", "blocks.1.layers=2"]) == 0
    assert (
        main(["render", "cliquenet-digits", "--set", "blocks.1.layers=2", "-o", str(tmp_path / "b.dot")]) == 0
    )
    assert "block 1, 2 layers" in (tmp_path / "b.dot").read_text()


def test_summary_compare_and_what_a_block_hands_on(capsys) -> None:
    assert main(["summary", "cliquenet-k36-t12", "--compare", "cliquenet-k36-t12-a", "--json"]) == 0
    ours, theirs = json.loads(capsys.readouterr().out)
    assert (ours["label"], theirs["label"]) == ("cliquenet-k36-t12", "cliquenet-k36-t12-a")
    block1 = next(part for part in ours["parts"] if part["part"] == "block1")
    assert (block1["output"], block1["head_reads"]) == ([144, 32, 32], [208, 32, 32])  # 4 x 36; 64 + 144
    assert main(["summary", "cliquenet-k36-t12", "--compare", "cliquenet-k36-t12-a"]) == 0
    table = capsys.readouterr().out
    assert "cliquenet-k36-t12-a" in table and "transition1" in table
    densenet = summarize(compile_spec(resolve_spec("densenet-121")))
    assert [p.head_reads for p in densenet.parts if p.part.startswith("block")][:3] == [None] * 3


# --- sweep --grid ----------------------------------------------------------------------------------

TINY = """\
name: tiny
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 8}
defaults: {dropout: 0.1}
blocks:
  - {layers: 2, channels: 6}
  - {layers: 2, channels: 6}
"""
TRAIN = ["--data", "digits", "--epochs", "1", "--batch-size", "32", "--subset", "64"]


def test_grid_values_split_at_commas_outside_brackets() -> None:
    assert split_values("[x0,1],[x0, last], {a: 1, b: 2},'x,y'") == [
        "[x0,1]",
        "[x0, last]",
        "{a: 1, b: 2}",
        "'x,y'",
    ]
    key, assignments = parse_grid("defaults.feature=[x0,1],[x0,2]")
    assert key == "defaults.feature" and [a.value for a in assignments] == [["x0", 1], ["x0", 2]]
    for bad, message in (
        ("defaults.dropout", "--grid defaults.dropout: error: expected KEY=V1,V2,..."),
        ("defaults.dropout=0.1,,0.2", "--grid defaults.dropout=0.1,,0.2: error: an empty value"),
        ("blocks.*.channels=8,8", "--grid blocks.*.channels=8,8: error: the value 8 is listed twice"),
        ("defaults.dropot=0.1,0.2", "--grid defaults.dropot=0.1: error: unknown key `dropot`; did you mean"),
    ):
        with pytest.raises(SpecError) as caught:
            expand(["cliquenet-digits"], [], [bad])
        assert str(caught.value).startswith(message), str(caught.value)


def test_grid_is_the_cross_product_with_readable_names() -> None:
    variants = expand(
        ["cliquenet-k36-t12"],
        ["defaults.feature=null", "defaults.transit=null"],
        [
            "defaults.schedule.stages=2,3",
            "blocks.*.channels=36,64",
        ],
    )
    assert [v.name for v in variants] == [
        "cliquenet-k36-t12@stages=2,channels=36",
        "cliquenet-k36-t12@stages=2,channels=64",
        "cliquenet-k36-t12@stages=3,channels=36",
        "cliquenet-k36-t12@stages=3,channels=64",
    ]
    assert variants[3].varied == {"defaults.schedule.stages": 3, "blocks.*.channels": 64}
    assert [(b.stages, b.channels, b.feature) for b in variants[3].spec.resolved_blocks()][0] == (
        3,
        64,
        ("x0", 3),
    )
    assert load_spec(variants[3].text) == variants[3].spec
    # the paper's tables, one grid each (docs/analysis.md)
    tab1 = expand(
        ["cliquenet-ii-ii"],
        ["defaults.schedule=null"],
        ["defaults.feature=[x0,1],[x0,2]", "defaults.transit=1,2"],
    )
    cells = {variant.name.partition("@")[2]: variant.spec for variant in tab1}
    assert list(cells) == [
        "feature=[x0,1],transit=1",
        "feature=[x0,1],transit=2",
        "feature=[x0,2],transit=1",
        "feature=[x0,2],transit=2",
    ]
    paper = {
        "feature=[x0,1],transit=1": "i-i",
        "feature=[x0,1],transit=2": "i-ii",
        "feature=[x0,2],transit=2": "ii-ii",
    }
    for cell, shipped in paper.items():  # the same network as the shipped ablation spec
        assert (
            compile_spec(cells[cell]).program.ops
            == compile_spec(resolve_spec(f"cliquenet-{shipped}")).program.ops
        )
    tab2 = expand(["cliquenet-k64-t15"], [], ["defaults.schedule.partial=0,1,2,3,4,5"])
    for variant in tab2:
        x = variant.varied["defaults.schedule.partial"]
        assert (
            compile_spec(variant.spec).program.ops
            == compile_spec(resolve_spec(f"cliquenet-x{x}")).program.ops
        )


def test_folder_names_stay_one_safe_component() -> None:
    assert folder_name("tiny@description=a/b c") == "tiny@description=a_b_c"
    long = folder_name("tiny@" + "x" * 400)
    assert len(long.encode()) <= 200 and long != folder_name("tiny@" + "x" * 399)


def test_sweep_grid_end_to_end_on_digits(tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")
    pytest.importorskip("matplotlib", reason="needs the plot extra: pip install 'cliquegen[plot]'")
    spec, out = tmp_path / "tiny.yaml", tmp_path / "sweep"
    spec.write_text(TINY)
    args = [
        "sweep",
        str(spec),
        "--set",
        "defaults.dropout=0",
        "--grid",
        "blocks.*.channels=4,6",
        "--out",
        str(out),
    ]
    assert main([*args, *TRAIN]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count(": training (") == 2
    document = json.loads((out / "results.json").read_text())
    assert [row["spec"] for row in document["specs"]] == ["tiny@channels=4", "tiny@channels=6"]
    assert [row["varied"] for row in document["specs"]] == [
        {"blocks.*.channels": 4},
        {"blocks.*.channels": 6},
    ]
    assert document["settings"]["grid"] == ["blocks.*.channels=4,6"]
    assert (out / "results.csv").read_text().splitlines()[0].startswith("spec,blocks.*.channels,params,")
    assert "| spec | channels | params |" in (out / "results.md").read_text()
    for row, channels in zip(document["specs"], (4, 6), strict=True):
        folder = out / row["spec"] / "seed0"
        text = (folder / "spec.yaml").read_text()
        assert text.startswith(f"# {spec} --set defaults.dropout=0 --grid blocks.*.channels={channels}\n")
        variant = load_spec(text)
        assert [b.channels for b in variant.blocks] == [channels] * 2 and variant.defaults.dropout == 0
        assert row["params"] == summarize(compile_spec(variant)).params
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["epochs_done"] == 1
        # the run folder is self-contained: its spec file evaluates its checkpoint
        assert (
            main(
                [
                    "eval",
                    str(folder / "spec.yaml"),
                    "--weights",
                    str(folder / "best.pt"),
                    "--data",
                    "digits",
                    "--subset",
                    "32",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main([*args, *TRAIN]) == 0  # run again: every variant is finished
    assert capsys.readouterr().out.count("finished, skipped") == 2


def test_cli_set_trains_the_variant(tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn", reason="needs the train extra: pip install 'cliquegen[train]'")
    spec, out = tmp_path / "tiny.yaml", tmp_path / "run"
    spec.write_text(TINY)
    assert main(["train", str(spec), "--set", "blocks.2.layers=3", "--out", str(out), *TRAIN]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(spec),
                "--set",
                "blocks.2.layers=3",
                "--weights",
                str(out / "best.pt"),
                "--data",
                "digits",
                "--subset",
                "32",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["images"] == 32
    assert (
        main(["eval", str(spec), "--weights", str(out / "best.pt"), "--data", "digits", "--subset", "32"])
        == 2
    )
    assert "the weights do not fit" in capsys.readouterr().err


# --- cliquegen new ---------------------------------------------------------------------------------


def _keys(model, prefix="") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        sub = (
            info.annotation
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            else None
        )
        keys += _keys(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"]
    return keys


def test_new_writes_every_key_with_its_meaning_and_validates(tmp_path: Path, capsys) -> None:
    path = tmp_path / "my-net.yaml"
    assert main(["new", "my-net", "-o", str(path)]) == 0
    assert f"wrote {path}: my-net, 3 blocks" in capsys.readouterr().out
    text = path.read_text()
    spec = load_spec(path)
    assert spec.name == "my-net" and spec.stem.kind == "cifar"
    written = yaml.safe_load(text)
    for key in _keys(Spec):
        section, _, field = key.rpartition(".")
        mapping = written[section.split(".")[0]] if section else written
        for part in section.split(".")[1:]:
            mapping = mapping[part]
        assert field in mapping, key
        line = next(line for line in text.splitlines() if line.lstrip().startswith(f"{field}:"))
        assert " # " in line, line  # its meaning
    assert written["defaults"]["feature"] == ["x0", "last"] and written["defaults"]["transit"] == "last"
    # a spec that only changes `stages` just works
    assert load_spec(text.replace("    stages: 2", "    stages: 3")).resolved_blocks()[0].feature == ("x0", 3)
    assert main(["new", "my-net", "-o", str(path)]) == 2  # never replaces a file unasked
    assert f"{path} exists" in capsys.readouterr().err
    assert main(["new", "my-net", "-o", str(path), "--force", "--classes", "100"]) == 0
    assert load_spec(path).num_classes == 100


def test_new_for_a_large_input_chooses_the_stem_and_says_so(capsys) -> None:
    assert main(["new", "big", "--input", "224x224x3", "--classes", "1000", "-o", "-"]) == 0
    text = capsys.readouterr().out
    spec = load_spec(text)
    assert (spec.input.height, spec.input.width, spec.input.channels, spec.stem.kind) == (
        224,
        224,
        3,
        "imagenet",
    )
    assert "# Note: stem: imagenet, chosen for the 224x224 input" in text
    for bad in ("3x32x32", "32x32x", "axb"):
        assert main(["new", "big", "--input", bad, "-o", "-"]) == 2
        assert "HEIGHTxWIDTHxCHANNELS" in capsys.readouterr().err
    assert main(["new", "Big", "-o", "-"]) == 2
    assert "must be lower-case letters" in capsys.readouterr().err


CLASSIFIERS = sorted(name for name in shipped_specs() if not name.startswith(("pdasr", "srcliquenet")))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_new_like_a_shipped_spec_builds_the_same_network(name: str) -> None:
    base = resolve_spec(name)
    spec = load_spec(starting_spec("copy", like=base, like_label=name))
    assert summarize(compile_spec(spec)).params == summarize(compile_spec(base)).params
    assert compile_spec(spec).program.ops == compile_spec(base).program.ops


def test_new_like_an_image_network_copies_its_text_renamed(capsys, tmp_path) -> None:
    """The copy keeps the network and the comments that explain it; the name and description
    are the new spec's; it builds the same modules."""
    target = tmp_path / "mine.yaml"
    assert main(["new", "mine", "--like", "srcliquenet-x2-tiny", "-o", str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = target.read_text()
    assert text.startswith("# mine: a copy of srcliquenet-x2-tiny, written by `cliquegen new`.")
    assert "name: mine\ndescription: a variant of srcliquenet-x2-tiny\n" in text
    assert "# the feature embedding's clique block: Stage I + Stage II" in text  # its comments kept
    assert "yaml-language-server" not in text and "made small enough" not in text
    mine, base = load_spec(target), resolve_spec("srcliquenet-x2-tiny")
    assert compile_spec(mine).program.ops == compile_spec(base).program.ops
    assert main(["new", "mine2", "--like", "srcliquenet-x2-tiny", "--input", "32x32x3", "-o", "-"]) == 2
    assert "edit `input:` in the copy" in capsys.readouterr().err


def test_new_like_an_image_network_made_in_python_writes_its_values() -> None:
    base = ImageSpec.model_validate(resolve_spec("pdasr-clique-light").model_dump(mode="json"))
    assert base.provenance.hashed == "canonical JSON"
    text = starting_spec("light-copy", like=base, like_label="a spec made in Python")
    spec = load_spec(text)
    assert spec.name == "light-copy" and spec.description == "a variant of pdasr-clique-light"
    assert compile_spec(spec).program.ops == compile_spec(resolve_spec("pdasr-clique-light")).program.ops
