"""load_weights: a state_dict or checkpoint goes into a model strictly, or a summary says why not."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

import cliquegen
from cliquegen.checkpoint import files
from cliquegen.checkpoint.files import load_weights_file
from cliquegen.checkpoint.load import load_weights
from cliquegen.cli.main import main
from cliquegen.errors import WeightsError
from cliquegen.interop.official import from_official, to_official

SPECS = Path(__file__).resolve().parent.parent / "specs" / "imagenet"
TINY = "name: tiny\nnum_classes: 10\nblocks:\n  - {layers: 3, channels: 8}\n"
WIDE = TINY.replace("name: tiny", "name: tiny-wide").replace("channels: 8", "channels: 12")


@pytest.fixture(scope="module")
def spec() -> cliquegen.Spec:
    return cliquegen.load_spec(TINY)


def _trained(text: str, seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return cliquegen.create_model(cliquegen.load_spec(text)).state_dict()


def _error(spec, weights) -> str:
    with pytest.raises(WeightsError) as caught:
        load_weights(cliquegen.create_model(spec), weights, spec)
    return str(caught.value)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"epoch": 3, "model": sd, "settings": {"spec": "tiny"}},  # cliquegen train
        lambda sd: {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}},  # DataParallel
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
    ],
    ids=["state_dict", "train-checkpoint", "data-parallel", "compiled"],
)
def test_fitting_weights_load_exactly(spec, wrap):
    state = _trained(TINY)
    model = load_weights(cliquegen.create_model(spec), wrap(state), spec)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_a_file_is_read_safely_and_loaded(spec, tmp_path: Path):
    path = tmp_path / "w.pt"
    state = _trained(TINY)
    torch.save({"model": state}, path)
    model = load_weights(cliquegen.create_model(spec), path, spec)
    assert torch.equal(model.state_dict()["classifier.weight"], state["classifier.weight"])


def test_a_checkpoint_of_another_spec_names_both_specs(spec):
    checkpoint = {"model": _trained(WIDE), "spec": {"name": "tiny-wide", "sha256": "ab" * 32}}
    message = _error(spec, checkpoint)
    first = message.splitlines()[0]
    assert first == (
        f"the weights do not fit spec 'tiny': it holds the weights of spec 'tiny-wide' (sha256 {'ab' * 32}); "
        "build the model from that spec"
    )
    assert (
        "34 tensors of another shape: block1.w0_1: (12, 64, 3, 3) in the file, (8, 64, 3, 3) in the model"
        in message
    )
    assert "Traceback" not in message and "size mismatch" not in message  # never PyTorch's raw dump


def test_the_checkpoint_info_names_the_spec(spec):
    info = {"spec_name": "tiny-wide", "spec_sha256": "ef" * 32, "spec_text": WIDE, "input_size": [3, 32, 32]}
    message = _error(spec, {"model": _trained(WIDE), "info": info})
    assert (
        f"it holds the weights of spec 'tiny-wide' (sha256 {'ef' * 32}); build the model from that spec"
        in message
    )


def test_the_train_settings_record_names_the_spec(spec):
    message = _error(spec, {"model": _trained(WIDE), "settings": {"spec": "tiny-wide"}})
    assert "it holds the weights of spec 'tiny-wide'; build the model from that spec" in message


def test_a_changed_spec_of_the_same_name_is_told(spec):
    message = _error(spec, {"model": _trained(WIDE), "spec": {"name": "tiny", "sha256": "cd" * 32}})
    assert f"spec 'tiny' (sha256 {'cd' * 32}) as it was when they were saved; the spec has changed" in message


def test_an_unrecorded_cliquegen_state_dict_of_another_spec(spec):
    message = _error(spec, _trained(WIDE))
    assert message.splitlines()[0] == (
        "the weights do not fit spec 'tiny': it has the layout of a cliquegen model of another spec "
        "(or of another version of it)"
    )


def test_the_authors_layout_names_the_converting_command(spec):
    official = {
        "module.fir_trans.weight": torch.zeros(64, 3, 7, 7),
        "module.list_block.0.conv_param.1.weight": torch.zeros(1),
    }
    message = _error(spec, {"epoch": 90, "state_dict": official})
    assert message.splitlines()[0] == (
        "the weights do not fit spec 'tiny': it has the authors' official-pytorch checkpoint layout; "
        "convert it first: cliquegen import-weights --format official-pytorch W.pt --spec tiny "
        "-o converted.pt"
    )


def test_torchvision_densenet_layout_names_the_converting_command(spec):
    torchvision = {
        "features.conv0.weight": torch.zeros(64, 3, 7, 7),
        "features.norm0.weight": torch.zeros(64),
    }
    assert _error(spec, torchvision).splitlines()[0] == (
        "the weights do not fit spec 'tiny': it has torchvision's DenseNet layout; convert it first: "
        "cliquegen import-weights --format torchvision W.pt --spec tiny -o converted.pt"
    )


def test_unknown_layout_shows_its_keys(spec):
    first = _error(spec, {"encoder.layer.0.weight": torch.zeros(2)}).splitlines()[0]
    assert (
        first == "the weights do not fit spec 'tiny': its keys (encoder.layer.0.weight) are of no "
        "layout cliquegen knows"
    )


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [(torch.int64, "integer"), (torch.int8, "integer"), (torch.bool, "bool"), (torch.complex64, "complex")],
)
def test_integer_bool_and_complex_weights_are_refused(spec, dtype, kind):
    state = _trained(TINY)
    state["block1.w0_1"] = torch.ones(state["block1.w0_1"].shape, dtype=dtype)
    message = _error(spec, state)
    assert (
        f"1 tensor of the wrong type: block1.w0_1 holds {kind} values ({dtype}), expected floating-point"
        in message
    )


def test_num_batches_tracked_is_an_integer_and_half_precision_weights_load(spec):
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in _trained(TINY).items()}
    assert any(k.endswith("num_batches_tracked") and v.dtype == torch.int64 for k, v in state.items())
    load_weights(cliquegen.create_model(spec), state, spec)
    state["stem.conv.weight"] = state["stem.conv.weight"].float()
    bad = dict(state, **{k: v.float() for k, v in state.items() if k.endswith("num_batches_tracked")})
    assert "holds floating-point values (torch.float32), expected integer (torch.int64)" in _error(spec, bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(spec, value):
    state = _trained(TINY)
    state["classifier.bias"][3] = value
    assert "1 tensor with NaN or infinite values: classifier.bias" in _error(spec, state)


def test_missing_unexpected_and_non_tensor_values_are_counted(spec):
    state = _trained(TINY)
    del state["classifier.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["classifier.weight"] = [1.0, 2.0]
    message = _error(spec, state)
    assert "1 tensor missing: classifier.bias (10,)" in message
    assert "1 tensor unexpected: extra.weight (3,)" in message
    assert "classifier.weight is a list, not a tensor" in message


def test_nothing_is_copied_when_the_weights_do_not_fit(spec):
    model = cliquegen.create_model(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = _trained(TINY)
    state["classifier.bias"][0] = float("nan")
    with pytest.raises(WeightsError):
        load_weights(model, state, spec)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([torch.zeros(1)], "expected a state_dict or a checkpoint, got list"),
        ({1: torch.zeros(1)}, "expected a state_dict with string keys, found the key 1"),
        ({}, "the state_dict is empty"),
        ({"a": torch.zeros(1), "module.a": torch.zeros(1)}, "the key 'a' appears both with and without"),
    ],
)
def test_malformed_containers_are_refused(spec, bad, message):
    assert message in _error(spec, bad)


def test_export_with_weights_of_another_spec_exits_2_with_the_summary(tmp_path: Path, capsys):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY, encoding="utf-8")
    weights = tmp_path / "wide.pt"
    torch.save({"model": _trained(WIDE), "settings": {"spec": "tiny-wide"}}, weights)
    out = tmp_path / "tiny.pt2"
    code = main(
        ["export", str(spec_file), "--weights", str(weights), "--format", "exported-program", "-o", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[0] == (
        f"cliquegen: error: {weights}: the weights do not fit spec 'tiny': "
        "it holds the weights of spec 'tiny-wide'; "
        "build the model from that spec"
    )
    assert "Traceback" not in err and not out.exists()


# --- the weight-file readers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def s0_official() -> tuple[cliquegen.Spec, dict[str, torch.Tensor]]:
    from official_cliquenet import official_cliquenet

    return cliquegen.load_spec(SPECS / "cliquenet-s0.yaml"), official_cliquenet("cliquenet-s0").state_dict()


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_import_refuses_integer_bool_and_complex_weights(s0_official, dtype):
    spec, state = s0_official
    bad = dict(state, **{"fc.weight": state["fc.weight"].to(dtype)})
    kind = {torch.int32: "integer", torch.bool: "bool", torch.complex64: "complex"}[dtype]
    with pytest.raises(WeightsError) as caught:
        from_official(bad, spec)
    assert f"fc.weight (for classifier.weight) holds {kind} values ({dtype}), expected floating-point" in str(
        caught.value
    )


def test_import_accepts_integer_num_batches_tracked_only(s0_official):
    spec, state = s0_official
    assert state["fir_bn.num_batches_tracked"].dtype == torch.int64
    from_official(state, spec)
    bad = dict(state, **{"fir_bn.num_batches_tracked": torch.tensor(3.0)})
    with pytest.raises(WeightsError, match=r"fir_bn\.num_batches_tracked .* holds floating-point values"):
        from_official(bad, spec)


def test_export_weights_refuses_integer_weights(s0_official):
    spec, state = s0_official
    ours = from_official(state, spec)
    ours["classifier.bias"] = ours["classifier.bias"].long()
    with pytest.raises(WeightsError, match=r"classifier\.bias \(for fc\.bias\) holds integer values"):
        to_official(ours, spec)


def _deflated(source: Path, target: Path) -> None:
    """``source`` (a torch.save zip) with every entry deflate-compressed, as torch still reads it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename), compress_type=zipfile.ZIP_DEFLATED)


def test_the_size_limit_bounds_what_a_file_unpacks_to(tmp_path: Path, monkeypatch, capsys):
    plain, bomb = tmp_path / "plain.pt", tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(1_000_000)}, plain)  # 4 MB of zeros
    _deflated(plain, bomb)
    assert bomb.stat().st_size < 50_000  # torch.load would unpack it to 4 MB
    assert torch.load(bomb, weights_only=True)["w"].numel() == 1_000_000  # the attack works on torch.load
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1_000_000)
    out = tmp_path / "out.pt"
    code = main(["import-weights", str(bomb), "--spec", "cliquenet-s0", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.startswith(f"cliquegen: error: {bomb}: it unpacks to 4,000,")
    assert err.endswith("bytes, over the 1,000,000-byte limit for weight files\n")


def test_a_file_within_the_limit_unpacked_is_read(tmp_path: Path):
    plain, packed = tmp_path / "plain.pt", tmp_path / "packed.pt"
    torch.save({"w": torch.zeros(1000)}, plain)
    _deflated(plain, packed)
    assert torch.equal(load_weights_file(packed, max_bytes=1_000_000)["w"], torch.zeros(1000))


def test_a_legacy_file_claiming_a_huge_storage_is_refused_cleanly(tmp_path: Path):
    """The pre-1.6 format (the authors' checkpoints): a storage whose header claims 2 GB."""
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(10)}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    size_at = data.index(b"X\x03\x00\x00\x00cpuq\x06") + len(b"X\x03\x00\x00\x00cpuq\x06")
    assert data[size_at : size_at + 2] == b"K\x0a"  # BININT1 10: the storage's element count
    legacy.write_bytes(data[:size_at] + b"J" + struct.pack("<i", 500_000_000) + data[size_at + 2 :])
    with pytest.raises(WeightsError, match="cannot read it as a PyTorch weights file"):
        load_weights_file(legacy)
