"""cliquegen models through timm's own functions: the registry, create_model, features_only,
and a Hub-format folder written by save_for_hf and loaded back with ``local-dir:``.

Where torchvision cannot be imported (see ``torchvision_stand_in``), timm is imported beside a
stand-in that raises if anything uses it.  Nothing here touches the network.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision_stand_in

import cliquegen
from cliquegen import UsageError
from cliquegen.checkpoint.files import load_weights_file
from cliquegen.spec.loader import load_spec
from cliquegen.spec.network import ImageSpec
from cliquegen.spec.shipped import shipped_specs

TESTS = Path(__file__).resolve().parent
USER_SPEC = """\
name: my-timm-net
description: "a spec of a user's own"
num_classes: 5
input: {channels: 3, height: 16, width: 16}
stem: {channels: 6}
blocks:
  - {layers: 3, channels: 4}
  - {layers: 2, channels: 4, bottleneck: true}
  - {layers: 2, channels: 5, schedule: {stages: 3}, feature: [x0, 3], transit: 3}
transition: {attention: true}
head: {compression: true}
"""


@pytest.fixture(scope="module")
def timm():
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed: pip install 'cliquegen[timm]'")
    installed = torchvision_stand_in.install()
    try:
        import timm

        yield timm
    finally:
        torchvision_stand_in.remove(installed)


@pytest.fixture
def user_spec(tmp_path: Path) -> Path:
    path = tmp_path / "my-timm-net.yaml"
    path.write_text(USER_SPEC)
    return path


def settled(model: torch.nn.Module) -> torch.nn.Module:
    """The model in eval mode with BatchNorm statistics that are not the initial ones."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model.eval()


def test_importing_cliquegen_registers_every_shipped_spec(timm) -> None:
    """Every shipped classification network: timm's models are classifiers, so the image
    networks (PDASR's refiner, SRCliqueNet-style) are not registered."""
    specs = {name: load_spec(path) for name, path in shipped_specs().items()}
    shipped = sorted(
        name.replace("-", "_") for name, spec in specs.items() if not isinstance(spec, ImageSpec)
    )
    assert not ({name.replace("-", "_") for name in specs} - set(shipped)) & set(timm.list_models())
    assert sorted(timm.list_models("cliquenet*")) == [
        name for name in shipped if name.startswith("cliquenet")
    ]
    assert set(shipped) <= set(timm.list_models())
    cfg = timm.models.get_pretrained_cfg("cliquenet_s3").to_dict()
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 1000
    assert (cfg["mean"], cfg["std"]) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (cfg["first_conv"], cfg["classifier"], cfg["license"]) == ("stem.conv", "classifier", "mit")
    assert cfg["paper_ids"] == "arXiv:1802.10419" and "Alternately Updated Clique" in cfg["paper_name"]
    cifar = timm.models.get_pretrained_cfg("cliquenet_k36_t12").to_dict()
    assert cifar["input_size"] == (3, 32, 32) and cifar["num_classes"] == 10
    assert cifar["mean"] == (0.4914, 0.4822, 0.4465)


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_timm_create_model_is_cliquegen_create_model(timm, emit: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("cliquenet_digits", num_classes=7, drop_rate=0.1, emit=emit)
    torch.manual_seed(0)
    ours = cliquegen.create_model("cliquenet-digits", num_classes=7, drop_rate=0.1, emit=emit)
    assert model.num_classes == 7 and model.block1.dropout.p == 0.1
    assert model.pretrained_cfg["architecture"] == "cliquenet_digits"
    theirs, mine = model.state_dict(), ours.state_dict()
    assert theirs.keys() == mine.keys() and all(torch.equal(theirs[k], mine[k]) for k in theirs)
    headless = timm.create_model("cliquenet_digits", num_classes=0, defaults={"dropout": 0.0}, emit=emit)
    assert headless.eval()(torch.randn(2, 1, 8, 8)).shape == (2, headless.num_features)


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_features_only_gives_the_block_maps(timm, user_spec: Path, emit: str) -> None:
    name = cliquegen.register_timm_model(user_spec)
    assert name == "my_timm_net" and name in timm.list_models("my_*")
    torch.manual_seed(0)
    backbone = timm.create_model(name, features_only=True, out_indices=(0, 2), emit=emit)
    torch.manual_seed(0)
    model = settled(cliquegen.create_model(user_spec, emit=emit))
    loaded = backbone.model.load_state_dict(model.state_dict(), strict=False)
    assert not loaded.missing_keys  # the pruned backbone lacks only what comes after block 3's map
    assert loaded.unexpected_keys and all(
        key.startswith(("head.", "classifier.")) for key in loaded.unexpected_keys
    )
    backbone.eval()
    assert type(backbone).__name__ == "FeatureGetterNet"
    assert backbone.feature_info.channels() == [12, 18]
    assert backbone.feature_info.reduction() == [1, 4]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        maps = backbone(x)
        expected = model.forward_intermediates(x, indices=(0, 2), intermediates_only=True)
    assert len(maps) == 2
    for got, want in zip(maps, expected, strict=True):
        assert torch.equal(got, want)


def save_and_reload(timm, model: torch.nn.Module, folder: Path) -> tuple[dict, torch.nn.Module]:
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    return config, timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def test_a_shipped_model_round_trips_through_a_hub_folder(timm, tmp_path: Path) -> None:
    model = settled(timm.create_model("cliquenet_digits", num_classes=6))
    config, loaded = save_and_reload(timm, model, tmp_path / "digits")
    assert config["architecture"] == "cliquenet_digits" and config["num_classes"] == 6
    assert config["model_args"]["spec"] == shipped_specs()["cliquenet-digits"].read_text()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    tensors = load_weights_file(tmp_path / "digits" / "model.safetensors")  # our reader, too
    fresh = cliquegen.create_model("cliquenet-digits", num_classes=6).eval()
    fresh.load_state_dict(tensors, strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_a_user_spec_round_trips_with_only_the_folder(
    timm, user_spec: Path, tmp_path: Path, emit: str
) -> None:
    name = cliquegen.register_timm_model(user_spec)
    model = settled(timm.create_model(name, emit=emit))
    user_spec.unlink()  # the folder must be enough
    config, loaded = save_and_reload(timm, model, tmp_path / "hub")
    assert config["architecture"] == "cliquegen_spec"  # built from the config's spec text
    assert config["model_args"]["spec"] == USER_SPEC and config["model_args"]["emit"] == emit
    assert type(loaded).__name__ == type(model).__name__
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_fresh_process_needs_only_import_cliquegen_and_the_folder(
    timm, user_spec: Path, tmp_path: Path
) -> None:
    model = settled(timm.create_model(cliquegen.register_timm_model(user_spec), num_classes=3))
    folder = tmp_path / "hub"
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save(model(x), tmp_path / "expected.pt")
    script = f"""
import sys, torch
torch.set_num_threads(1)  # as the tests run: the same order of sums, the same bits
sys.path.insert(0, {str(TESTS)!r})
import torchvision_stand_in
torchvision_stand_in.install()
import cliquegen  # before timm: registration waits for timm's import
import timm
assert "cliquenet_s3" in timm.list_models("cliquenet*")
model = timm.create_model("local-dir:{folder}", pretrained=True).eval()
x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    assert torch.equal(model(x), torch.load({str(tmp_path / "expected.pt")!r}))
print("same logits")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same logits"


def test_cliquegen_imports_when_timm_cannot(tmp_path: Path) -> None:
    script = """
import sys
sys.modules["torchvision"] = None  # a torchvision that cannot be imported
import cliquegen
try:
    import timm
except ImportError as error:
    print("timm:", type(error).__name__)
try:
    cliquegen.register_timm_model("cliquenet-digits")
except cliquegen.UsageError as error:
    print("register:", error)
print(cliquegen.create_model("cliquenet-digits").num_classes)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "timm: ModuleNotFoundError" or lines[0] == "timm: ImportError"
    assert lines[1].startswith("register: timm cannot be imported (") and "torchvision" in lines[1]
    assert lines[1].endswith("install it with: pip install 'cliquegen[timm]'")
    assert lines[2] == "10"


def test_register_refuses_a_name_timm_already_has(timm, tmp_path: Path) -> None:
    path = tmp_path / "resnet50.yaml"
    path.write_text(USER_SPEC.replace("name: my-timm-net", "name: resnet50"))
    with pytest.raises(UsageError, match="timm already has a model named 'resnet50'"):
        cliquegen.register_timm_model(path)


def test_timms_model_arguments_and_head_convention(timm) -> None:
    model = timm.create_model("cliquenet_k36_t12", device="meta", dtype=torch.float64)
    assert {(t.device.type, t.dtype) for t in model.parameters()} == {("meta", torch.float64)}
    cfg = model.pretrained_cfg
    assert cfg["pool_size"] == (8, 8)  # 32x32 input, two transitions: the last block's size
    features = model.forward_features(torch.empty(2, 3, 32, 32, device="meta", dtype=torch.float64))
    assert features.shape == (2, model.num_features, 8, 8)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
    unpooled = timm.create_model("densenet_k12_t36", num_classes=0, global_pool="").eval()
    with torch.no_grad():
        assert unpooled(torch.randn(1, 3, 32, 32)).shape == (1, unpooled.num_features, 8, 8)
    with pytest.raises(TypeError, match="override not_a_model_arg: unknown key"):
        timm.create_model("cliquenet_digits", not_a_model_arg=1)


def test_the_generic_name_builds_only_what_it_is_given_and_is_not_listed(timm) -> None:
    assert "cliquegen_spec" not in timm.list_models() and timm.is_model("cliquegen_spec")
    with pytest.raises(UsageError, match="needs spec="):
        timm.create_model("cliquegen_spec")
    model = timm.create_model("cliquegen_spec", spec=USER_SPEC, num_classes=2)
    assert model.num_classes == 2 and model.feature_info[-1]["num_chs"] == 8 + 2 * 5
