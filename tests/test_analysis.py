"""``cliquegen analyze weights|features``: the numbers behind each figure against a direct
computation (the state_dict; the reference network's intermediate values), the figure files."""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import reference_forward

from cliquegen import cli, compile_spec, create_model, load_spec
from cliquegen.analysis.analyze import feature_maps, read_sample, weight_matrices
from cliquegen.analysis.features import Input, central_share, intermediate_values
from cliquegen.analysis.figures import draw_feature_maps, draw_weight_matrices
from cliquegen.analysis.weights import gini
from cliquegen.draw.figure import save_figure

pytest.importorskip("matplotlib", reason="needs the plot extra: pip install 'cliquegen[plot]'")

# Two blocks: a full Stage II with a custom order, and CliqueNet-X with X=1 (some W_ij unused).
SPEC = """\
name: tiny-analysis
description: "two small clique blocks for the analysis tests"
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 6}
defaults: {dropout: 0.0, schedule: {stages: 2}}
blocks:
  - {layers: 3, channels: 4, schedule: {order: [2, 3, 1]}}
  - {layers: 3, channels: 5, schedule: {partial: 1}}
"""
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF-"}


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-analysis.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def trained(spec_path: Path, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A state_dict with distinct W_ij strengths and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = create_model(load_spec(spec_path))
    state = model.state_dict()
    generator = torch.Generator().manual_seed(1)
    for k, (key, value) in enumerate(state.items()):
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        elif re.fullmatch(r"block\d+\.w\d+_\d+", key):  # a W_ij: random signs, its own magnitude
            value.copy_(torch.randn(value.shape, generator=generator).sign() * 0.01 * (1 + k % 13))
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    return path, state


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_matrix(state: dict[str, torch.Tensor], block: int, layers: int) -> list[list[float | None]]:
    """Mean |W_ij| straight from the state_dict's names (None where no such weight)."""
    rows = []
    for i in range(layers + 1):
        row = []
        for j in range(1, layers + 1):
            key = f"block{block}.w{i}_{j}"
            row.append(float(state[key].double().abs().mean()) if key in state else None)
        rows.append(row)
    return rows


def assert_image_file(path: Path, fmt: str) -> None:
    data = path.read_bytes()
    assert data.startswith(MAGIC[fmt]) or (fmt == "svg" and b"<svg" in data[:2000])
    if fmt == "png":
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 200


# --- weights ------------------------------------------------------------------------------------


def test_weight_matrices_are_the_mean_absolute_weights(spec_path: Path, trained) -> None:
    _, state = trained
    spec = load_spec(spec_path)
    matrices = weight_matrices(compile_spec(spec), state)
    assert [(m.block, m.stages, m.tied) for m in matrices] == [(1, [1, 2], True), (2, [1, 2], True)]
    for m in matrices:
        assert m.matrix == expected_matrix(state, m.block, 3)
        assert m.rows == ["X0", "X1", "X2", "X3"] and m.columns == ["X1", "X2", "X3"]
    # X=1: Stage II updates only X1 (from X2 and X3), so W21 and W31 exist but W32 does not
    second = matrices[1].matrix
    assert second[3][1] is None and second[2][0] is not None and second[3][0] is not None
    assert all(second[j][j - 1] is None for j in range(1, 4))  # no W_jj
    only_second = weight_matrices(compile_spec(spec), state, block=2)
    assert [m.to_json() for m in only_second] == [matrices[1].to_json()]


def test_weight_usage_follows_the_update_graph_not_the_names(spec_path: Path, trained) -> None:
    """Each entry names the parameter that the Program applies to the edge (i, j)."""
    _, state = trained
    compiled = compile_spec(load_spec(spec_path))
    (first, _) = weight_matrices(compiled, state)
    graph = compiled.graph
    edges = {graph.edges[e]["weight"] for e in graph.edges if e[0][0] == 0}
    present = {(i, j + 1) for i, row in enumerate(first.parameters) for j, key in enumerate(row) if key}
    assert present == edges


def test_untied_blocks_get_one_matrix_per_stage(spec_path: Path) -> None:
    """share_weights: false gives Stage II its own W_ij (and a bottleneck changes nothing here)."""
    untied = SPEC.replace("name: tiny-analysis", "name: tiny-untied").replace(
        "  - {layers: 3, channels: 4, schedule: {order: [2, 3, 1]}}",
        "  - {layers: 3, channels: 4, share_weights: false, bottleneck: true}",
    )
    spec = load_spec(untied)
    torch.manual_seed(0)
    state = create_model(spec).state_dict()
    for k, key in enumerate(sorted(state)):
        if re.fullmatch(r"block\d+\.w\d+_\d+(_s\d+)?", key):
            state[key] = torch.full_like(state[key], 0.01 * (k + 1)) * (-1) ** k
    matrices = weight_matrices(compile_spec(spec), state)
    assert [(m.block, m.stages, m.tied) for m in matrices] == [
        (1, [1], False),
        (1, [2], False),
        (2, [1, 2], True),
    ]
    for m in matrices[:2]:
        (stage,) = m.stages
        for i, row in enumerate(m.matrix):
            for j, value in enumerate(row, start=1):
                key = f"block1.w{i}_{j}_s{stage}"
                expected = float(state[key].double().abs().mean()) if key in state else None
                assert value == expected, (stage, i, j)
                assert m.parameters[i][j - 1] == (key if key in state else None)
    stage_one, stage_two = matrices[0].matrix, matrices[1].matrix
    assert all(v is not None for v in stage_one[0]) and all(v is None for v in stage_two[0])  # X0: Stage I
    assert stage_one[2][0] is None and stage_two[2][0] is not None  # W21: only Stage II reads X2 into X1


@pytest.mark.parametrize(
    "values",
    [[1.0, 1.0, 1.0], [0.0, 0.0, 3.0], [0.2, 0.5, 0.1, 0.9, 0.4], list(np.linspace(1, 2, 12))],
)
def test_gini_matches_the_pairwise_definition(values: list[float]) -> None:
    pairs = sum(abs(a - b) for a, b in itertools.product(values, values))
    assert gini(values) == pytest.approx(pairs / (2 * len(values) ** 2 * np.mean(values)))
    assert gini([2 * v for v in values]) == pytest.approx(gini(values))  # scale-free


def test_weight_figure_shows_the_matrices(spec_path: Path, trained, tmp_path: Path) -> None:
    _, state = trained
    matrices = weight_matrices(compile_spec(load_spec(spec_path)), state)
    figure = draw_weight_matrices(matrices, "tiny")
    shown = [axes.images[0].get_array() for axes in figure.axes if axes.images]
    assert len(shown) == len(matrices)
    for array, m in zip(shown, matrices, strict=True):
        expected = np.array([[np.nan if v is None else v for v in row] for row in m.matrix])
        assert np.array_equal(np.ma.getmaskarray(array), np.isnan(expected))
        assert np.allclose(array.filled(np.nan), expected, equal_nan=True)
    for fmt in ("png", "svg", "pdf"):
        path = save_figure(figure, tmp_path / f"a.{fmt}")
        assert_image_file(path, fmt)
        if fmt != "png":  # no dates, a fixed SVG id salt: the same bytes every time
            again = save_figure(draw_weight_matrices(matrices, "tiny"), tmp_path / f"b.{fmt}")
            assert path.read_bytes() == again.read_bytes()


def test_analyze_weights_cli(spec_path: Path, trained, tmp_path: Path, capsys) -> None:
    weights, state = trained
    figure = tmp_path / "w.svg"
    code, out, err = run_cli(
        capsys, "analyze", "weights", spec_path, "--weights", weights, "-o", figure, "--json"
    )
    assert code == 0, err
    blocks = json.loads(out)["blocks"]
    assert [b["block"] for b in blocks] == [1, 2]
    for b in blocks:
        assert b["matrix"] == expected_matrix(state, b["block"], 3)
        present = [v for row in b["matrix"] for v in row if v is not None]
        assert b["gini"] == pytest.approx(gini(present))
    assert_image_file(figure, "svg")
    code, out, _ = run_cli(
        capsys, "analyze", "weights", spec_path, "--weights", weights, "--block", "2", "--json"
    )
    assert code == 0 and [b["block"] for b in json.loads(out)["blocks"]] == [2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block", "3", "--json"], "--block 3: the spec has blocks 1..2"),
        (["-o", "w.gif"], "a figure is written as .png, .svg or .pdf"),
        ([], "give -o FIG"),
    ],
)
def test_analyze_weights_usage_errors(spec_path: Path, trained, capsys, args, message) -> None:
    weights, _ = trained
    code, _, err = run_cli(capsys, "analyze", "weights", spec_path, "--weights", weights, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_weights_that_do_not_fit_the_spec(spec_path: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.pt"
    torch.save(create_model("cliquenet-digits").state_dict(), other)
    code, _, err = run_cli(capsys, "analyze", "weights", spec_path, "--weights", other, "--json")
    assert code == 2 and "the weights do not fit spec 'tiny-analysis'" in err


def test_without_matplotlib_the_command_names_the_extra(
    spec_path: Path, trained, tmp_path, capsys, monkeypatch
):
    weights, _ = trained
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    code, _, err = run_cli(
        capsys, "analyze", "weights", spec_path, "--weights", weights, "-o", tmp_path / "w.png"
    )
    assert code == 2 and "pip install 'cliquegen[plot]'" in err
    assert not (tmp_path / "w.png").exists()


# --- features -----------------------------------------------------------------------------------


def test_intermediate_values_are_the_networks_own(spec_path: Path, trained) -> None:
    _, state = trained
    spec = load_spec(spec_path)
    model = create_model(spec)
    model.load_state_dict(state)
    images = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    record: dict[str, torch.Tensor] = {}
    expected_logits = reference_forward(spec, state, images, record=record)
    logits, values = intermediate_values(model.eval(), images, list(record))
    assert set(values) == set(record) and len(record) == 2 + 3 * 2 + 3 + 1  # X0s, updates
    for name, value in record.items():
        torch.testing.assert_close(values[name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-6)
    source = create_model(spec, emit="source")
    source.load_state_dict(state)
    torch.testing.assert_close(logits, source.eval()(images), rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="b9_x1_s1"):
        intermediate_values(model, images, ["b9_x1_s1"])


@pytest.mark.parametrize("block", [1, 2])
def test_feature_maps_and_their_statistics(spec_path: Path, trained, block: int) -> None:
    _, state = trained
    spec = load_spec(spec_path)
    model = create_model(spec)
    model.load_state_dict(state)
    image = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(4))
    maps = feature_maps(spec, model, Input(image, "noise", image[0].numpy()), block=block)
    record: dict[str, torch.Tensor] = {}
    logits = reference_forward(spec, state, image[None], record=record)
    assert maps.prediction == str(int(logits.argmax()))
    # block 2 is CliqueNet-X with X=1: only X1 has a Stage II value; X2 and X3 end at Stage I
    last = {1: {1: 2, 2: 2, 3: 2}, 2: {1: 2, 2: 1, 3: 1}}[block]
    assert [[m.stage for m in layer.maps] for layer in maps.layers] == [
        sorted({1, last[j]}) for j in (1, 2, 3)
    ]
    for layer in maps.layers:
        for m in layer.maps:
            assert (
                m.value == f"b{block}_x{layer.layer}_s{m.stage}" and m.label == f"X{layer.layer}({m.stage})"
            )
            value = record[m.value][0].abs().mean(0).double()  # (H, W)
            np.testing.assert_allclose(m.array, value.numpy(), rtol=1e-5, atol=1e-6)
            h, w = value.shape
            inside = sum(
                float(value[r, c])
                for r in range(h)
                for c in range(w)
                if h / 4 <= r < h - h / 4 and w / 4 <= c < w - w / 4
            )
            assert m.central_share == pytest.approx(inside / float(value.sum()), rel=1e-4)
            assert m.mean == pytest.approx(float(value.mean()), rel=1e-4)
            assert m.max == pytest.approx(float(value.max()), rel=1e-4)
    figure = draw_feature_maps(maps)
    shown = [axes.images[0].get_array() for axes in figure.axes if axes.images]
    expected = [image[0].numpy()] + [m.array for layer in maps.layers for m in layer.maps]
    assert len(shown) == len(expected)
    for array, want in zip(shown, expected, strict=True):
        np.testing.assert_allclose(np.asarray(array), want)
    for layer in maps.layers:  # one colour scale per layer
        limits = {
            axes.images[0].get_clim()
            for axes in figure.axes
            if axes.images
            and any(np.array_equal(np.asarray(axes.images[0].get_array()), m.array) for m in layer.maps)
        }
        assert limits == {(0.0, max(m.max for m in layer.maps))}


def test_central_share_of_even_and_centred_maps() -> None:
    assert central_share(torch.ones(8, 8)) == pytest.approx(0.25)
    centred = torch.zeros(8, 8)
    centred[2:6, 2:6] = 1
    assert central_share(centred) == 1.0
    assert central_share(torch.zeros(4, 4)) == 0.0


def test_analyze_features_cli_with_a_sample(spec_path: Path, trained, tmp_path: Path, capsys) -> None:
    weights, state = trained
    figure = tmp_path / "f.png"
    code, out, err = run_cli(
        capsys,
        "analyze",
        "features",
        spec_path,
        "--weights",
        weights,
        "--sample",
        "digits:7",
        "-o",
        figure,
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    spec = load_spec(spec_path)
    shown = read_sample("digits:7", spec)
    record: dict[str, torch.Tensor] = {}
    reference_forward(spec, state, shown.tensor[None], record=record)
    assert report["image"] == shown.title and report["block"] == 1
    for layer in report["layers"]:
        for m in layer["maps"]:
            value = record[m["value"]][0].abs().mean(0)
            assert m["mean"] == pytest.approx(float(value.mean()), rel=1e-4)
            assert m["max"] == pytest.approx(float(value.max()), rel=1e-4)
    assert_image_file(figure, "png")


def test_analyze_features_cli_with_an_image(spec_path: Path, trained, tmp_path: Path, capsys) -> None:
    from PIL import Image

    weights, state = trained
    picture = tmp_path / "digit.png"
    pixels = (np.arange(16 * 16).reshape(16, 16) % 251).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(picture)
    code, out, err = run_cli(
        capsys,
        "analyze",
        "features",
        spec_path,
        "--weights",
        weights,
        "--image",
        picture,
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--block",
        "2",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    resized = Image.open(picture).convert("L").resize((8, 8), Image.Resampling.BILINEAR)
    tensor = (torch.tensor(np.asarray(resized), dtype=torch.float32) / 255.0 - 0.5) / 0.25
    record: dict[str, torch.Tensor] = {}
    reference_forward(load_spec(spec_path), state, tensor[None, None], record=record)
    first = report["layers"][0]["maps"][0]
    assert report["block"] == 2 and first["value"] == "b2_x1_s1"
    assert first["mean"] == pytest.approx(float(record["b2_x1_s1"][0].abs().mean()), rel=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "digits:100000"], "test set has images 0..359"),
        (["--sample", "digits"], "expected DATA:INDEX"),
        (["--image", "missing.png"], "missing.png: no such image file"),
    ],
)
def test_analyze_features_usage_errors(spec_path: Path, trained, capsys, args, message) -> None:
    weights, _ = trained
    code, _, err = run_cli(capsys, "analyze", "features", spec_path, "--weights", weights, "--json", *args)
    assert code == 2 and message in err and "Traceback" not in err
