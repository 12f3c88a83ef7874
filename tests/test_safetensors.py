"""Weights as safetensors: written atomically with their metadata, read by every weights reader
whatever the file is called, and never a way to run code."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from cliquegen import cli, create_model, load_spec
from cliquegen.checkpoint import files
from cliquegen.checkpoint.files import (
    info_metadata,
    load_weights_file,
    read_safetensors_file,
    save_safetensors_file,
    save_weights_file,
)
from cliquegen.checkpoint.info import model_info
from cliquegen.errors import WeightsError
from cliquegen.spec.shipped import resolve_spec

TINY = """\
name: tiny-safe
num_classes: 3
input: {channels: 2, height: 8, width: 8}
stem: {channels: 4}
blocks:
  - {layers: 2, channels: 4}
  - {layers: 2, channels: 4}
"""


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_round_trip_keeps_tensors_and_metadata(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "count": torch.tensor(7), "half": torch.ones(2, dtype=torch.float16)}
    path = tmp_path / "w.safetensors"
    save_safetensors_file(state, path, metadata={"note": "text", "sizes": [1, 2]})
    tensors, read = read_safetensors_file(path)
    assert tensors.keys() == state.keys()
    assert all(
        torch.equal(tensors[key], state[key]) and tensors[key].dtype == state[key].dtype for key in state
    )
    assert read == {"format": "pt", "note": "text", "sizes": "[1, 2]"}
    renamed = tmp_path / "w.pt"  # read by its bytes, not its name
    renamed.write_bytes(path.read_bytes())
    assert torch.equal(load_weights_file(renamed)["w"], state["w"])  # no cliquegen metadata: tensors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt", "w.safetensors"]


def test_a_checkpoint_info_travels_in_the_metadata(tmp_path: Path) -> None:
    spec = resolve_spec("cliquenet-digits")
    info = model_info(spec, classes=list("0123456789"), mean=[0.25], std=[0.5],
                      data="digits", overrides={"num_classes": 10})  # fmt: skip
    path = tmp_path / "w.safetensors"
    save_weights_file({"w": torch.ones(1)}, path, metadata=info_metadata(info))
    _, metadata = read_safetensors_file(path)
    assert metadata["spec"] == info.spec_text
    assert metadata["spec_sha256"] == hashlib.sha256(info.spec_text.encode()).hexdigest()
    assert json.loads(metadata["classes"]) == list("0123456789")
    assert (json.loads(metadata["mean"]), json.loads(metadata["std"])) == ([0.25], [0.5])
    checkpoint = load_weights_file(path)
    assert torch.equal(checkpoint["model"]["w"], torch.ones(1))
    assert checkpoint["info"] == info.to_dict()


def test_only_tensors_are_written_and_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"previous")
    with pytest.raises(WeightsError, match="'epoch' is a int"):
        save_weights_file({"epoch": 3, "w": torch.ones(1)}, path)
    shared = torch.ones(4)
    with pytest.raises(WeightsError, match="cannot write it as safetensors"):
        save_weights_file({"a": shared, "b": shared[:2]}, path)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_damaged_and_oversized_files_are_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.safetensors"
    save_safetensors_file({"w": torch.randn(64)}, path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_weights_file(truncated)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 64)
    with pytest.raises(WeightsError, match="over the 64-byte limit"):
        read_safetensors_file(path)


def test_a_pickle_named_safetensors_is_not_run(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "MARKER"
    payload = tmp_path / "payload.safetensors"
    payload.write_bytes(pickle.dumps({"model": _RunsCode(marker)}, protocol=2))
    spec = tmp_path / "tiny-safe.yaml"
    spec.write_text(TINY)
    output = tmp_path / "out.safetensors"
    argv = ["export", str(spec), "--weights", str(payload), "--format", "safetensors", "-o", str(output)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"cliquegen: error: {payload}: ") and "Traceback" not in error
    assert not marker.exists() and not output.exists()


def test_export_writes_the_weights_with_what_the_checkpoint_recorded(tmp_path: Path) -> None:
    spec = tmp_path / "tiny-safe.yaml"
    spec.write_text(TINY)
    torch.manual_seed(0)
    model = create_model(load_spec(spec)).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.5, 0.5)
    info = model_info(load_spec(spec), classes=["a", "b", "c"], mean=[0.1, 0.2], std=[0.3, 0.4])
    torch.save({"epoch": 2, "model": model.state_dict(), "info": info.to_dict()}, tmp_path / "last.pt")
    first, second = tmp_path / "w.safetensors", tmp_path / "again.weights"
    for source, target in ((tmp_path / "last.pt", first), (first, second)):
        argv = ["export", str(spec), "--weights", str(source), "--format", "safetensors", "-o", str(target)]
        assert cli.main(argv) == 0
    for path in (first, second):  # the second carries over the first one's metadata
        tensors, metadata = read_safetensors_file(path)
        assert metadata["spec"] == TINY
        assert metadata["spec_sha256"] == hashlib.sha256(spec.read_bytes()).hexdigest()
        assert json.loads(metadata["classes"]) == ["a", "b", "c"]
        assert json.loads(metadata["mean"]) == [0.1, 0.2] and json.loads(metadata["std"]) == [0.3, 0.4]
        fresh = create_model(load_spec(spec)).eval()
        fresh.load_state_dict(tensors, strict=True)
        x = torch.randn(2, 2, 8, 8)
        with torch.no_grad():
            assert torch.equal(fresh(x), model(x))


def test_export_without_weights_records_the_spec(tmp_path: Path) -> None:
    output = tmp_path / "digits.safetensors"
    assert cli.main(["export", "cliquenet-digits", "--format", "safetensors", "-o", str(output)]) == 0
    _, metadata = read_safetensors_file(output)
    assert "classes" not in metadata and "mean" not in metadata
    shipped = Path(__file__).resolve().parent.parent / "specs" / "digits" / "cliquenet-digits.yaml"
    assert metadata["spec"] == shipped.read_text()
    assert metadata["spec_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
