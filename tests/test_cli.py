"""The command line: exit codes, located errors, JSON output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cliquegen.cli.main import main
from cliquegen.spec.schema import spec_schema

ROOT = Path(__file__).resolve().parent.parent
K36 = "specs/cifar10/cliquenet-k36-t12.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cliquegen", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_summary_json_reports_the_paper_numbers_for_k36_t12() -> None:
    result = run("summary", K36, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == "cliquenet-k36-t12"
    assert round(summary["params"] / 1e6, 2) == 0.94
    assert round(summary["flops"] / 1e9, 2) == 0.91
    assert summary["flops"] == 2 * summary["macs"]
    assert sum(part["params"] for part in summary["parts"]) == summary["params"]


def test_invalid_spec_gives_a_located_error_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnum_classes: 10\nblocks:\n  - {layers: 4, chanels: 36}\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(f"{bad}:4:")
    assert "did you mean `channels`?" in result.stderr


def test_validate_accepts_every_shipped_spec(capsys: pytest.CaptureFixture) -> None:
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").rglob("*.yaml"))
    assert main(["validate", *(str(ROOT / s) for s in specs)]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(specs)


def test_validate_reports_every_bad_file_and_still_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("name: good\nnum_classes: 3\nblocks:\n  - {layers: 2, channels: 4}\n")
    bad.write_text("name: bad\nnum_classes: 3\nblocks: []\n")
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: ok (good)" in captured.out
    assert captured.err.startswith(f"{bad}:3:")


def test_summary_accepts_a_shipped_name_and_prints_a_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["summary", "cliquenet-s3"]) == 0
    out = capsys.readouterr().out
    for part in ("stem", "block4", "transition3", "head", "classifier", "total"):
        assert part in out


def test_summary_of_an_image_network_has_no_head_column(capsys: pytest.CaptureFixture) -> None:
    assert main(["summary", "srcliquenet-x2-tiny"]) == 0
    out = capsys.readouterr().out
    assert "head reads" not in out and "what each part of the network gives" in out
    assert re.search(r"block1 +│ 24x24x24 +│ +10,464 │", out)  # output, then params: no empty column
    assert main(["summary", "cliquenet-s3"]) == 0
    assert "head reads" in capsys.readouterr().out


def test_unknown_model_name_suggests_close_matches(capsys: pytest.CaptureFixture) -> None:
    assert main(["summary", "cliquenet-s9"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'cliquenet-s9'" in err and "cliquegen list" in err


def test_list_json_names_every_shipped_spec(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in rows]
    assert names == sorted(names) and "cliquenet-s3" in names
    s3 = next(row for row in rows if row["name"] == "cliquenet-s3")
    assert round(s3["params"] / 1e6, 2) == 14.38
    families = [row["family"] for row in rows]
    assert families == sorted(families)  # grouped
    assert set(families) == {"cliquenet", "densenet", "pdasr", "srcliquenet"}
    pdasr = next(row for row in rows if row["name"] == "pdasr-clique")
    assert (pdasr["params"], pdasr["flops"]) == (2_601_420, 2 * 13_444_890_624)
    assert {row["name"] for row in rows if row["family"] == "densenet"} >= {
        "densenet-121",
        "densenet-k12-t36",
    }


def test_list_shows_each_family_once_at_the_head_of_its_group(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for family in ("cliquenet", "densenet", "pdasr", "srcliquenet"):  # srcliquenet holds "cliquenet"
        assert len(re.findall(rf"(?<![a-z]){family} ", out)) == 1, family


def test_checked_in_schema_is_current_and_draft_07(capsys: pytest.CaptureFixture) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == spec_schema() == json.loads((ROOT / "cliquegen.schema.json").read_text())
    assert printed["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "$defs" not in json.dumps(printed)  # draft-07 uses definitions


def test_every_shipped_spec_references_the_schema() -> None:
    for path in (ROOT / "specs").rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        target = first.removeprefix("# yaml-language-server: $schema=")
        assert first != target, path
        assert (path.parent / target).resolve() == ROOT / "cliquegen.schema.json", path


def test_shipped_specs_validate_against_the_schema_as_an_editor_would() -> None:
    import jsonschema
    import yaml

    validator = jsonschema.Draft7Validator(json.loads((ROOT / "cliquegen.schema.json").read_text()))
    for path in (ROOT / "specs").rglob("*.yaml"):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    assert list(
        validator.iter_errors({"name": "x", "num_classes": 1, "blocks": [{"layers": 2, "chanels": 3}]})
    )
