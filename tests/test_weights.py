"""The authors' ImageNet weights in cliquegen: strict conversion, safe files, equal logits.

``official_cliquenet.py`` rebuilds their network with their module names; a checkpoint
saved from it the way their training script saves one is converted with the CLI, loaded
into ``create_model`` with strict=True, and must give their logits.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest
import torch
from official_cliquenet import official_cliquenet, randomize, training_checkpoint
from reference import reference_forward
from torch import nn

import cliquegen
from cliquegen import cli
from cliquegen.checkpoint import files
from cliquegen.checkpoint.files import save_weights_file
from cliquegen.errors import WeightsError
from cliquegen.interop.official import convert_from_official, from_official, to_official
from cliquegen.models import EMITTERS

SPECS = Path(__file__).resolve().parent.parent / "specs" / "imagenet"
TOLERANCE = 1e-4  # relative: max |ours - theirs| / max |theirs|


def spec_path(name: str) -> str:
    return str(SPECS / f"{name}.yaml")


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


class Official:
    """A randomly initialised network of theirs, its saved checkpoint and its logits."""

    def __init__(self, name: str, folder: Path, seed: int, with_w00: bool):
        self.name = name
        self.model = randomize(official_cliquenet(name, with_w00=with_w00), seed).eval()
        self.checkpoint = training_checkpoint(self.model)
        self.path = folder / f"{name}.pth.tar"
        torch.save(self.checkpoint, self.path)
        self.images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad():
            self.logits = self.model(self.images)

    @property
    def spec(self) -> cliquegen.Spec:
        return cliquegen.load_spec(spec_path(self.name))


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Official]:
    folder = tmp_path_factory.mktemp("official")
    # S3 also carries conv_param.0, the W_00 some versions of their code build and never use.
    return {
        "cliquenet-s0": Official("cliquenet-s0", folder, seed=0, with_w00=False),
        "cliquenet-s3": Official("cliquenet-s3", folder, seed=3, with_w00=True),
    }


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def import_weights(capsys: pytest.CaptureFixture[str], source: Path, spec: str, out: Path) -> str:
    code, stdout, stderr = run_cli(
        capsys, "import-weights", "--format", "official-pytorch", str(source), "--spec", spec, "-o", str(out)
    )
    assert code == 0, stderr
    return stdout


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("emit", sorted(EMITTERS))
@pytest.mark.parametrize("name", ["cliquenet-s0", "cliquenet-s3"])  # S3: attentional transitions
def test_imported_weights_give_the_authors_logits(official, tmp_path, capsys, name, emit):
    theirs = official[name]
    out = tmp_path / "weights.pt"
    stdout = import_weights(capsys, theirs.path, spec_path(name), out)
    assert f"tensors for {name}" in stdout

    model = cliquegen.create_model(spec_path(name), emit=emit)
    model.load_state_dict(torch.load(out, map_location="cpu", weights_only=True), strict=True)
    with torch.no_grad():
        logits = model.eval()(theirs.images)
    assert logits.shape == theirs.logits.shape == (1, 1000)
    assert relative_difference(logits, theirs.logits) < TOLERANCE


def test_the_independent_reference_agrees_with_the_authors_network(official):
    """tests/reference.py (written from the stage equations) computes their logits too."""
    theirs = official["cliquenet-s0"]
    state = from_official(theirs.checkpoint, theirs.spec)
    logits = reference_forward(theirs.spec, state, theirs.images)
    assert relative_difference(logits, theirs.logits) < TOLERANCE


def test_the_shipped_imagenet_specs_have_the_authors_shapes():
    """S1 and S2 too: every tensor of their network maps onto the spec, shape for shape."""
    for name in ("cliquenet-s1", "cliquenet-s2"):
        state = official_cliquenet(name).state_dict()
        converted = from_official(state, cliquegen.load_spec(spec_path(name)))
        assert len(converted) == len(state)


# --------------------------------------------------------------------------- round trip


def test_export_writes_the_checkpoint_their_script_resumes_from(official, tmp_path, capsys):
    theirs = official["cliquenet-s3"]
    ours, exported = tmp_path / "ours.pt", tmp_path / "exported.pth.tar"
    import_weights(capsys, theirs.path, "cliquenet-s3", ours)
    code, stdout, stderr = run_cli(
        capsys, "export-weights", "--to", "official-pytorch", str(ours), "--spec", "cliquenet-s3",
        "-o", str(exported),
    )  # fmt: skip
    assert code == 0, stderr

    checkpoint = torch.load(exported, map_location="cpu", weights_only=True)
    assert {"epoch", "state_dict", "best_prec1", "optimizer"} <= set(checkpoint)
    assert all(key.startswith("module.") for key in checkpoint["state_dict"])

    # Their resume: DataParallel model, load_state_dict (strict), optimizer.load_state_dict.
    model = official_cliquenet("cliquenet-s3")  # as published: no conv_param.0
    wrapped = nn.DataParallel(model)
    wrapped.load_state_dict(checkpoint["state_dict"], strict=True)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    optimizer.load_state_dict(checkpoint["optimizer"])

    original = theirs.checkpoint["state_dict"]
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(value, original[key]), key
    assert set(original) - set(checkpoint["state_dict"]) == {
        f"module.list_block.{b}.conv_param.0.weight" for b in range(4)
    }
    with torch.no_grad():
        assert torch.equal(model.eval()(theirs.images), theirs.logits)


def test_to_official_inverts_from_official(official):
    theirs = official["cliquenet-s0"]
    ours = from_official(theirs.checkpoint, theirs.spec)
    back = to_official(ours, theirs.spec)
    original = {key.removeprefix("module."): value for key, value in theirs.checkpoint["state_dict"].items()}
    assert back.keys() == original.keys()
    assert all(torch.equal(back[key], original[key]) for key in back)
    again = from_official(back, theirs.spec)
    assert all(torch.equal(again[key], ours[key]) for key in ours)


# --------------------------------------------------------------------------- strictness


@pytest.fixture(scope="module")
def s0_state(official) -> dict[str, torch.Tensor]:
    """Their S0 state_dict without the `module.` prefix."""
    return {
        k.removeprefix("module."): v for k, v in official["cliquenet-s0"].checkpoint["state_dict"].items()
    }


def s0_spec() -> cliquegen.Spec:
    return cliquegen.load_spec(spec_path("cliquenet-s0"))


def test_bare_and_prefixed_state_dicts_and_full_checkpoints_are_accepted(official, s0_state):
    checkpoint = official["cliquenet-s0"].checkpoint
    expected = from_official(s0_state, s0_spec())
    for source in (checkpoint, checkpoint["state_dict"], {"state_dict": s0_state}):
        converted = from_official(source, s0_spec())
        assert converted.keys() == expected.keys()
        assert all(torch.equal(converted[key], expected[key]) for key in expected)


def test_only_conv_param_0_is_ignored(s0_state):
    extra = dict(s0_state)
    extra["list_block.1.conv_param.0.weight"] = torch.zeros(64, 64, 1, 1)
    conversion = convert_from_official(extra, s0_spec())
    assert conversion.ignored == ["list_block.1.conv_param.0.weight"]

    extra["list_block.0.conv_param.6.weight"] = torch.zeros(36, 36, 1, 1)  # i=1, j=0: no such W
    with pytest.raises(WeightsError, match=r"unexpected list_block\.0\.conv_param\.6\.weight"):
        from_official(extra, s0_spec())


def test_missing_num_batches_tracked_are_filled_with_zero(s0_state):
    old = {key: value for key, value in s0_state.items() if not key.endswith("num_batches_tracked")}
    conversion = convert_from_official(old, s0_spec())
    assert len(conversion.filled) == len(s0_state) - len(old) > 0
    assert all(conversion.state_dict[key].item() == 0 for key in conversion.filled)
    cliquegen.create_model(s0_spec()).load_state_dict(conversion.state_dict, strict=True)
    # present ones are mapped, not reset
    assert from_official(s0_state, s0_spec())["stem.bn.num_batches_tracked"].item() > 0


def test_a_missing_tensor_is_named(s0_state):
    state = dict(s0_state)
    del state["list_block.2.loop_bn.3.running_var"]
    with pytest.raises(WeightsError) as error:
        from_official(state, s0_spec())
    assert "missing list_block.2.loop_bn.3.running_var (for block3.bn4_s2.running_var, shape (500,))" in str(
        error.value
    )


def test_s0_weights_do_not_fit_the_s3_spec(official, tmp_path, capsys):
    out = tmp_path / "out.pt"
    code, _, stderr = run_cli(
        capsys, "import-weights", str(official["cliquenet-s0"].path), "--spec", "cliquenet-s3", "-o", str(out)
    )
    assert code == 2
    first = stderr.splitlines()[1].strip()
    assert first == (
        "list_block.0.conv_param.1.weight (for block1.w0_1) has shape (36, 64, 1, 1), expected (40, 64, 1, 1)"
    )
    assert "Traceback" not in stderr
    assert not out.exists()


def test_values_that_are_not_tensors_and_clashing_prefixes_are_refused(s0_state):
    with pytest.raises(WeightsError, match=r"fc\.bias \(for classifier\.bias\) is a list, not a tensor"):
        from_official({**s0_state, "fc.bias": [0.0] * 1000}, s0_spec())
    with pytest.raises(WeightsError, match="both with and without the `module.` prefix"):
        from_official({**s0_state, "module.fc.bias": s0_state["fc.bias"]}, s0_spec())
    with pytest.raises(WeightsError, match="state_dict is empty"):
        from_official({}, s0_spec())


def test_the_wrong_direction_is_explained(s0_state):
    ours = from_official(s0_state, s0_spec())
    with pytest.raises(WeightsError, match="a cliquegen state_dict already: no `import-weights` is needed"):
        from_official(ours, s0_spec())
    with pytest.raises(WeightsError, match="checkpoint already: no `export-weights` is needed"):
        to_official(s0_state, s0_spec())


def _with_defaults(**changes):
    return lambda data: data["defaults"].update(changes)


def _first_block_order(data):
    data["blocks"][0] = {**data["blocks"][0], "schedule": {"order": [5, 4, 3, 2, 1]}}


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda data: data.update(stem={"kind": "cifar", "channels": 64}), "stem.kind is 'cifar'"),
        (lambda data: data.update(head={"compression": False}), "head.compression is false"),
        (_with_defaults(bottleneck=False), "block 1: bottleneck is false"),
        (_with_defaults(schedule={"stages": 3}, feature=["x0", 3], transit=3), "block 1: stages is 3"),
        (_with_defaults(schedule={"stages": 2, "partial": 3}), "block 1: partial is 3"),
        (_first_block_order, "block 1: order is [5, 4, 3, 2, 1]"),
        (_with_defaults(feature=[2]), "block 1: feature is [2]"),
    ],
)
def test_specs_their_code_cannot_build_are_refused(s0_state, change, reason):
    data = s0_spec().model_dump(exclude_unset=True)
    data["defaults"] = dict(data["defaults"])
    change(data)
    spec = cliquegen.Spec.model_validate(data)
    with pytest.raises(WeightsError, match="cannot hold the authors' official-pytorch weights") as error:
        from_official(s0_state, spec)
    assert reason in str(error.value)


def test_a_refused_spec_fails_the_cli_with_exit_2(official, tmp_path, capsys):
    code, _, stderr = run_cli(
        capsys,
        "import-weights",
        str(official["cliquenet-s0"].path),
        "--spec",
        str(Path(__file__).resolve().parent.parent / "specs/cifar10/cliquenet-k36-t12.yaml"),
        "-o",
        str(tmp_path / "out.pt"),
    )
    assert code == 2
    assert "stem.kind is 'cifar'" in stderr and "Traceback" not in stderr


# --------------------------------------------------------------------------- unsafe and damaged files


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(folder: Path, marker: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase of the message it must produce)."""
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, phrase: str) -> None:
        path = folder / name
        path.write_bytes(data)
        files[name] = (path, phrase)

    data = good.read_bytes()
    add("truncated.pth.tar", data[: len(data) // 2], "truncated or corrupt")
    # damage shows as one of several errors depending on the bytes: only the file is named
    add("random.pt", random.Random(0).randbytes(4096), "random.pt: ")
    add("text.pt", b"epoch: 90\nstate_dict: yes\n", "cannot read it")
    add("empty.pt", b"", "the file is empty")
    add("pickle-os-system.pkl", pickle.dumps(_RunsCode(marker), protocol=2), "posix.system")
    runs_code = folder / "torch-save-os-system.pt"
    torch.save({"state_dict": _RunsCode(marker)}, runs_code)
    files["torch-save-os-system.pt"] = (runs_code, "posix.system")
    not_a_dict = folder / "list.pt"
    torch.save([torch.zeros(2)], not_a_dict)
    files["list.pt"] = (not_a_dict, "holds a list, not a checkpoint")
    files["missing.pt"] = (folder / "missing.pt", "no such file")
    files["a-folder"] = (folder, "not a regular file")
    return files


def test_bad_files_give_a_clear_error_and_exit_2_and_run_nothing(official, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, (path, phrase) in _bad_files(bad, marker, official["cliquenet-s0"].path).items():
        for command in ("import-weights", "export-weights"):
            out = tmp_path / "out.pt"
            code, _, stderr = run_cli(capsys, command, str(path), "--spec", "cliquenet-s0", "-o", str(out))
            assert code == 2, (name, stderr)
            assert phrase in stderr, (name, stderr)
            assert "Traceback" not in stderr
            assert not out.exists()
    assert not marker.exists(), "a pickle payload was executed"


def test_the_os_system_payload_is_not_run_by_a_subprocess_cli(tmp_path):
    """The real console entry point, in a fresh interpreter."""
    import subprocess
    import sys

    marker = tmp_path / "MARKER"
    payload = tmp_path / "payload.pth.tar"
    torch.save({"epoch": 1, "state_dict": _RunsCode(marker)}, payload)
    result = subprocess.run(
        [sys.executable, "-m", "cliquegen", "import-weights", str(payload), "--spec", "cliquenet-s0",
         "-o", str(tmp_path / "out.pt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refused (nothing in it was run)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_files_over_the_size_limit_are_refused_unread(official, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1024)
    code, _, stderr = run_cli(
        capsys, "import-weights", str(official["cliquenet-s0"].path), "--spec", "cliquenet-s0",
        "-o", str(tmp_path / "out.pt"),
    )  # fmt: skip
    assert code == 2
    assert "is over the 1,024-byte limit for weight files" in stderr


def test_writes_are_atomic(tmp_path):
    target = tmp_path / "weights.pt"
    target.write_bytes(b"previous")
    with pytest.raises(Exception):  # noqa: B017 (whatever torch.save raises for a lambda)
        save_weights_file({"bad": lambda: 0}, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]

    save_weights_file({"w": torch.ones(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]
