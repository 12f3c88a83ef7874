"""ONNX export of a super-resolution model: dynamic height and width, task metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cliquegen.checkpoint.info import ModelInfo, model_info
from cliquegen.errors import WeightsError
from cliquegen.interop.export import export_model, load_model, read_metadata
from cliquegen.spec.shipped import resolve_spec

TINY = "specs/sr/srcliquenet-x2-tiny.yaml"


@pytest.fixture
def checkpoint(tmp_path):
    spec = resolve_spec(TINY)
    torch.manual_seed(0)
    state = load_model(spec).state_dict()
    info = model_info(spec, task="super-resolution", scale=2, pixel_range=[0.0, 1.0])
    path = tmp_path / "sr.pt"
    torch.save({"model": state, "info": info.to_dict()}, path)
    return path


def test_onnx_takes_any_height_and_width(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_model(TINY, "onnx", tmp_path / "sr.onnx", weights=checkpoint)
    metadata = read_metadata(path)
    assert metadata["task"] == "super-resolution" and json.loads(metadata["scale"]) == 2
    assert json.loads(metadata["pixel_range"]) == [0.0, 1.0]
    model = load_model(TINY, checkpoint)
    onnx = pytest.importorskip("onnx")
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param and not d.dim_value for d in (dims[0], dims[2], dims[3]))  # dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 24, 24), (2, 3, 13, 30)):  # the spec's patch, and another size
        x = torch.rand(shape)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        want = model(x).detach().numpy()
        assert got.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
        # float32 sums in another order: differences of a few 1e-4 of the output's range
        assert np.abs(got - want).max() / np.abs(want).max() < 1e-3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scale": 0}, "info.scale"),
        ({"scale": 17}, "info.scale"),
        ({"task": "detection"}, "info.task"),
        ({"pixel_range": [1.0, 0.0]}, "pixel_range"),
        ({"pixel_range": [0.0, float("nan")]}, "info.pixel_range[1]"),
        ({"pixel_range": [0.0]}, "info.pixel_range"),
        ({"scale": None}, "must carry its scale"),
    ],
)
def test_a_damaged_task_record_is_refused(change, field):
    info = model_info(resolve_spec(TINY), task="super-resolution", scale=2, pixel_range=[0.0, 1.0])
    with pytest.raises(WeightsError, match=field.replace("[", r"\[")):
        ModelInfo.from_dict(info.to_dict() | change, "w.pt")


def test_an_older_record_without_the_task_still_loads():
    record = model_info(resolve_spec(TINY)).to_dict()
    for key in ("task", "scale", "pixel_range"):
        del record[key]
    assert ModelInfo.from_dict(record, "w.pt").task is None
