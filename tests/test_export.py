"""``cliquegen export``: ONNX (checked with onnxruntime), torch.export programs and TorchScript
give the eager model's outputs, with trained weights and a dynamic batch dimension."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cliquegen import cli, create_model, load_spec

# Every op kind the emitter has: attention (sigmoid, scale), compression, bottleneck, dropout.
SMALL = """\
name: small-export
description: "every op kind, small"
input: {channels: 3, height: 16, width: 16}
num_classes: 7
stem: {kind: cifar, channels: 8}
defaults: {dropout: 0.3, schedule: {stages: 2}}
blocks:
  - {layers: 3, channels: 6}
  - {layers: 2, channels: 6, bottleneck: true}
transition: {attention: true}
head: {compression: true}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module]:
    """A spec, a weights file with non-trivial BatchNorm statistics, and the eager model."""
    root = tmp_path_factory.mktemp("export")
    spec = root / "small-export.yaml"
    spec.write_text(SMALL)
    torch.manual_seed(0)
    model = create_model(load_spec(spec))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                tensor.uniform_(-0.5, 0.5)
            elif name.endswith(("running_var", "weight")) and tensor.dim() == 1:
                tensor.uniform_(0.5, 1.5)
    weights = root / "weights.pt"
    torch.save({"epoch": 3, "model": model.state_dict()}, weights)  # a `cliquegen train` checkpoint
    return spec, weights, model.eval()


def export(tmp_path: Path, spec: Path, weights: Path, fmt: str, name: str) -> Path:
    output = tmp_path / name
    argv = ["export", str(spec), "--weights", str(weights), "--format", fmt, "-o", str(output)]
    assert cli.main(argv) == 0
    return output


def inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))


def relative_difference(a, b) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float((a - b).abs().max() / b.abs().max())


def test_onnx_matches_torch_at_batch_1_and_3(trained, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    spec, weights, model = trained
    path = export(tmp_path, spec, weights, "onnx", "model.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # weights inside, no .data file
    graph = onnx.load(str(path)).graph
    assert "Dropout" not in {node.op_type for node in graph.node}  # eval mode
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = inputs(batch)
        (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            expected = model(x)
        assert logits.shape == (batch, 7)
        assert relative_difference(logits, expected) < 1e-4


def test_exported_program_reloads(trained, tmp_path: Path) -> None:
    spec, weights, model = trained
    path = export(tmp_path, spec, weights, "exported-program", "model.pt2")
    program = torch.export.load(path)
    assert not any("dropout" in str(node.target) for node in program.graph.nodes)
    for batch in (1, 3):
        x = inputs(batch)
        with torch.no_grad():
            assert relative_difference(program.module()(x), model(x)) < 1e-5


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_reloads(trained, tmp_path: Path) -> None:
    spec, weights, model = trained
    path = export(tmp_path, spec, weights, "torchscript", "model.ts")
    scripted = torch.jit.load(str(path))
    for batch in (1, 3):
        x = inputs(batch)
        with torch.no_grad():
            assert relative_difference(scripted(x), model(x)) < 1e-5


def test_weights_of_another_model_are_refused(trained, tmp_path: Path, capsys) -> None:
    spec, _, _ = trained
    other = tmp_path / "other.pt"
    torch.save(create_model(load_spec(SMALL.replace("channels: 8}", "channels: 10}"))).state_dict(), other)
    argv = ["export", str(spec), "--weights", str(other), "--format", "exported-program", "-o", "x.pt2"]
    assert cli.main(argv) == 2
    assert f"{other}: the weights do not fit spec 'small-export'" in capsys.readouterr().err
    assert not Path("x.pt2").exists()


def test_missing_onnx_extra_names_it(trained, tmp_path: Path, monkeypatch, capsys) -> None:
    spec, weights, _ = trained
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import now raises ImportError
    argv = ["export", str(spec), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]
    assert cli.main(argv) == 2
    assert "pip install 'cliquegen[export]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
