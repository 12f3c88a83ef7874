"""The loader: good specs load from files and text; every bad input is a located SpecError.

`tests/data/malformed/NAME.yaml` holds one bad spec each; `NAME.expected` the exact
diagnostics it must produce.  `CLIQUEGEN_ACCEPT=1 pytest tests/test_loader.py` rewrites
the expected files (review the diff: every message must point at the fix).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cliquegen.errors import Diagnostic, SpecError
from cliquegen.spec.loader import MAX_BYTES, load_spec
from cliquegen.spec.model import Spec

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = ROOT / "tests" / "data" / "malformed"
ACCEPT = os.environ.get("CLIQUEGEN_ACCEPT") == "1"

TINY = """\
name: tiny
num_classes: 10
blocks:
  - {layers: 3, channels: 8}
"""


def _error(source, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(source, **kwargs)
    return caught.value


# --- malformed specs and their exact messages ------------------------------------------------


@pytest.mark.parametrize("case", sorted(MALFORMED.glob("*.yaml")), ids=lambda p: p.stem)
def test_malformed_spec_gives_expected_diagnostics(case: Path):
    shown = case.relative_to(ROOT).as_posix()
    text = str(_error(case, path=shown)) + "\n"
    expected = case.with_suffix(".expected")
    if ACCEPT:
        expected.write_text(text, encoding="utf-8")
    assert text == expected.read_text(encoding="utf-8")


def test_every_expected_file_has_its_spec():
    specs = {p.stem for p in MALFORMED.glob("*.yaml")}
    expected = {p.stem for p in MALFORMED.glob("*.expected")}
    assert len(specs) >= 25
    assert specs == expected


def test_diagnostics_are_sorted_and_unique():
    text = "name: Tiny\nnum_classes: -1\nblocks:\n" + "  - {layers: 0, channels: 0}\n" * 2
    diagnostics = _error(text).diagnostics
    positions = [(d.line, d.column) for d in diagnostics]
    assert positions == sorted(positions) == [(1, 7), (2, 14), (4, 14), (4, 27), (5, 14), (5, 27)]
    assert len(set(diagnostics)) == len(diagnostics)


def test_inherited_problem_is_reported_once_for_all_blocks():
    text = TINY + "  - {layers: 3, channels: 8}\ndefaults:\n  schedule: {stages: 2}\n  feature: [x0, 3]\n"
    (diagnostic,) = _error(text).diagnostics
    assert (diagnostic.line, diagnostic.column) == (8, 17)
    assert diagnostic.message == (
        "feature names stage 3, but only 2 stages are computed; write `feature: [x0, last]`, or `stages: 3`"
    )


# --- good specs ------------------------------------------------------------------------------


def test_loads_from_path_str_path_and_text(tmp_path: Path):
    file = tmp_path / "tiny.yaml"
    file.write_text(TINY, encoding="utf-8")
    specs = [load_spec(file), load_spec(str(file)), load_spec(TINY)]
    assert all(isinstance(spec, Spec) for spec in specs)
    assert specs[0] == specs[1] == specs[2]
    assert specs[0].name == "tiny" and specs[0].num_classes == 10


def test_defaults_are_inherited_and_blocks_override_them():
    spec = load_spec(
        TINY
        + "  - {layers: 4, channels: 16, kernel: 5, schedule: {partial: 2}}\n"
        + "defaults:\n  kernel: 1\n  bottleneck: true\n  schedule: {stages: 2, order: null}\n"
    )
    first, second = spec.resolved_blocks()
    assert (first.kernel, first.bottleneck, first.stages, first.partial) == (1, True, 2, None)
    assert first.order == (1, 2, 3)
    assert (second.kernel, second.bottleneck, second.partial, second.layers) == (5, True, 2, 4)
    assert second.source["kernel"] == ("blocks", 1, "kernel")
    assert second.source["bottleneck"] == ("defaults", "bottleneck")


def test_scalars_keep_their_yaml_types():
    spec = load_spec(
        TINY + "description: '10'\ndefaults: {dropout: 0.25, bottleneck: True, feature: [x0, 1, 2]}\n"
    )
    assert spec.description == "10"
    assert spec.defaults.dropout == 0.25 and spec.defaults.bottleneck is True
    assert spec.defaults.feature == ["x0", 1, 2]


def test_anchors_aliases_and_merge_keys():
    spec = load_spec(
        "name: tiny\nnum_classes: 10\nblocks:\n"
        "  - &base {layers: 3, channels: 8, kernel: 5}\n"
        "  - {<<: *base, channels: 16}\n"
        "  - *base\n"
    )
    assert [(b.layers, b.channels, b.kernel) for b in spec.blocks] == [(3, 8, 5), (3, 16, 5), (3, 8, 5)]


def test_errors_in_merged_values_point_at_the_anchor():
    text = "name: tiny\nnum_classes: 10\nblocks:\n  - &base {layers: 3, channels: 0}\n  - {<<: *base}\n"
    assert str(_error(text)) == "<string>:4:33: error: `channels` must be at least 1, got 0"


# --- path or text, and file problems -----------------------------------------------------------


def test_str_ending_in_yaml_is_a_path_and_missing_file_is_reported():
    error = _error("no/such/spec.yaml")
    assert str(error) == "no/such/spec.yaml: error: cannot read the spec: No such file or directory"
    assert error.diagnostics[0].line is None


def test_directory_is_reported(tmp_path: Path):
    (diagnostic,) = _error(tmp_path).diagnostics
    assert diagnostic.path == str(tmp_path) and diagnostic.line is None
    assert diagnostic.message.startswith("cannot read the spec:")


def test_path_overrides_the_name_in_messages(tmp_path: Path):
    assert str(_error("name: tiny\n", path="specs/x.yaml")).startswith("specs/x.yaml:1:1: error: missing")
    assert str(_error("name: tiny\n")).startswith("<string>:1:1: error: missing")


def test_single_line_text_that_is_not_a_spec_hints_at_paths():
    message = _error("specs/tiny.txt").diagnostics[0].message
    assert "got" not in message and "pass a pathlib.Path" in message


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path):
    file = tmp_path / "big.yaml"
    file.write_bytes(b"#" * (MAX_BYTES + 1))
    assert "larger than" in str(_error(file))


# --- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/new:os.system ["touch {marker}"]',
        '!!python/object/apply:subprocess.call [["touch", "{marker}"]]',
        "!!python/name:os.system",
    ],
)
@pytest.mark.parametrize("where", ["description: {value}\n", "stem:\n  kind: {value}\n", "? {value}\n: 1\n"])
def test_python_tags_execute_nothing(tmp_path: Path, value: str, where: str):
    marker = tmp_path / "pwned"
    text = TINY + where.format(value=value.format(marker=marker))
    error = _error(text)
    assert not marker.exists()
    assert "is not allowed" in str(error)


def test_recursive_merge_is_refused():
    assert "merges itself" in str(_error("a: &a {<<: *a}\n"))


def test_deeply_nested_aliases_are_refused_without_recursion_error():
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 70)]
    assert "deeper than" in str(_error("\n".join(lines) + "\n"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_spec_errors(text: str):
    try:
        load_spec(text + "\n")  # the newline keeps it text, never a path
    except SpecError as error:
        assert error.diagnostics and all(isinstance(d, Diagnostic) for d in error.diagnostics)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_in_a_file_raise_only_spec_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
):
    file = tmp_path_factory.mktemp("bytes") / "spec.yaml"
    file.write_bytes(data)
    try:
        load_spec(file)
    except SpecError as error:
        assert error.diagnostics


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_KEYS = ["layers", "channels", "kernel", "schedule", "stages", "partial", "order", "feature", "transit", "x"]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4), st.sampled_from(["blocks", "defaults"]))
def test_arbitrary_values_in_a_spec_raise_only_located_spec_errors(overrides: dict, where: str):
    base = yaml.safe_load(TINY)
    if where == "blocks":
        base["blocks"][0].update(overrides)
    else:
        base["defaults"] = overrides
    text = yaml.safe_dump(base)
    try:
        load_spec(text)
    except SpecError as error:
        assert all(d.line is not None and d.column is not None for d in error.diagnostics)
