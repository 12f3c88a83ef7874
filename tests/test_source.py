"""Generated source: equal to the FX model, golden files, determinism, isolation and safety."""

from __future__ import annotations

import ast
import difflib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import specs
from test_lowering import randomize_batchnorm

import cliquegen
from cliquegen import build_fx, compile_spec, generate_source, load_spec
from cliquegen.cli.main import main
from cliquegen.emit.source import LINE_LENGTH, build_source_model, exec_source
from cliquegen.spec.model import Spec

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"
SHIPPED = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "specs").rglob("*.yaml"))
SMALL = "specs/cifar10/cliquenet-k36-t12.yaml"
RUFF_RULES = "E,F,W,I,B,UP,SIM"  # the project's rule set (pyproject.toml)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm().clamp_min(1e-12)).item()


def assert_same_model(fx: torch.nn.Module, source: torch.nn.Module) -> None:
    """Identical state_dict keys, in the same order, with equal values."""
    a, b = fx.state_dict(), source.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_outputs(
    fx: torch.nn.Module, source: torch.nn.Module, x: torch.Tensor, training: bool
) -> None:
    fx.train(training)
    source.train(training)
    with torch.no_grad():
        torch.manual_seed(7)  # the same dropout masks: both call the same modules in the same order
        expected = fx(x)
        torch.manual_seed(7)
        got = source(x)
    assert relative_difference(expected, got) < 1e-5
    assert_same_model(fx, source)  # BatchNorm running statistics too


# --- FX == source ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_spec_source_equals_fx(path: str) -> None:
    spec = load_spec(Path(ROOT / path))
    torch.manual_seed(0)
    fx = build_fx(spec)
    torch.manual_seed(0)
    source = build_source_model(spec)
    assert_same_model(fx, source)  # same keys and, from the same seed, the same initial weights
    x = torch.randn(1, spec.input.channels, spec.input.height, spec.input.width)
    assert_same_outputs(fx, source, x, training=False)


def test_a_shipped_spec_with_dropout_agrees_in_training_mode() -> None:
    spec = load_spec(Path(ROOT / SMALL))
    fx = build_fx(spec)
    source = build_source_model(spec)
    randomize_batchnorm(fx, torch.Generator().manual_seed(1))
    source.load_state_dict(fx.state_dict())
    assert_same_outputs(fx, source, torch.randn(2, 3, 32, 32), training=True)


@settings(max_examples=25)
@given(specs())
def test_random_spec_source_equals_fx(spec: Spec) -> None:
    torch.manual_seed(0)
    fx = build_fx(spec)
    torch.manual_seed(0)
    source = build_source_model(spec)
    assert_same_model(fx, source)
    randomize_batchnorm(fx, torch.Generator().manual_seed(1))
    source.load_state_dict(fx.state_dict())
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width)
    for training in (False, True):
        assert_same_outputs(fx, source, x, training)
    source.eval()
    fx.eval()
    with torch.no_grad():
        features = source.forward_features(x)
        assert relative_difference(fx.forward_features(x), features) < 1e-5
        assert torch.equal(source.forward_head(features, pre_logits=True), features.mean((2, 3)))
    assert source.num_features == fx.num_features == features.shape[1]


def test_create_model_emits_source_with_the_model_helpers() -> None:
    model = cliquegen.create_model("cliquenet-k36-t12", emit="source", num_classes=7)
    assert type(model).__name__ == "CliquenetK36T12"
    assert model.num_features == 784
    model.reset_classifier(3)
    assert model.classifier.out_features == 3 and not model.classifier.bias.any()
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_each_block_runs_in_a_method_that_returns_only_what_later_code_reads() -> None:
    program = compile_spec(load_spec(Path(ROOT / SMALL))).program
    flow = [(group.name, group.inputs, group.outputs) for group in program.groups()]
    assert flow == [
        ("stem", (), ("b1_x0",)),
        ("block1", ("b1_x0",), ("b2_x0", "h1_pooled")),
        ("block2", ("b2_x0",), ("b3_x0", "h2_pooled")),
        ("block3", ("b3_x0",), ("h3_pooled",)),
        ("features", ("h1_pooled", "h2_pooled", "h3_pooled"), ("features",)),
        ("classifier", ("features",), ("logits",)),
    ]
    text = (GENERATED / "cliquenet_k36_t12.py").read_text()
    signature = [  # maps: forward_intermediates'; head_maps: forward_features'
        "    def forward_block1(",
        "        self,",
        "        b1_x0: torch.Tensor,",
        "        maps: list[torch.Tensor] | None = None,",
        "        head_maps: list[torch.Tensor] | None = None,",
        "    ) -> tuple[torch.Tensor, torch.Tensor]:",
    ]
    assert "\n".join(signature) in text
    call = (
        "        b2_x0, h1_pooled = self.forward_block1(b1_x0, maps, head_maps)  # (B, 144, 16, 16), (B, 208)"
    )
    assert call in text


@settings(max_examples=25)
@given(specs())
def test_groups_split_the_program_and_pass_exactly_the_live_values(spec: Spec) -> None:
    program = compile_spec(spec).program
    groups = program.groups()
    assert [op for group in groups for op in group.ops] == program.ops
    home = {op.name: index for index, group in enumerate(groups) for op in group.ops}
    for index, group in enumerate(groups):
        read = {name for op in group.ops for name in op.inputs}
        assert all(home[name] <= index for name in read)
        assert set(group.inputs) == {name for name in read if home[name] < index}
        later = {name for other in groups[index + 1 :] for op in other.ops for name in op.inputs}
        later |= {program.features, program.output}
        assert set(group.outputs) == {op.name for op in group.ops} & later


# --- golden files, determinism, style ----------------------------------------------------------


def test_generated_files_are_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`generated/` is what `cliquegen build` writes today; CLIQUEGEN_ACCEPT=1 rewrites it."""
    monkeypatch.chdir(ROOT)  # headers name the spec paths as given: specs/...
    assert main(["build", *SHIPPED, "-o", str(tmp_path)]) == 0
    assert f"{tmp_path / 'cliquenet_k36_t12.py'}: 0.936M params, 0.910G FLOPs" in capsys.readouterr().out
    built = {path.name: path.read_text() for path in tmp_path.glob("*.py")}
    if os.environ.get("CLIQUEGEN_ACCEPT") == "1":
        for stale in GENERATED.glob("*.py"):
            stale.unlink()
        assert main(["build", *SHIPPED, "-o", str(GENERATED)]) == 0
    golden = {path.name: path.read_text() for path in GENERATED.glob("*.py")}
    assert sorted(golden) == sorted(built), "generated/ holds other modules than the shipped specs build"
    problems = [
        "".join(
            difflib.unified_diff(
                golden[name].splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"generated/{name}",
                f"rebuilt/{name}",
            )
        )
        for name, text in sorted(built.items())
        if golden[name] != text
    ]
    assert not problems, "generated/ is stale (CLIQUEGEN_ACCEPT=1 rewrites it):\n" + "\n".join(problems)


DIGEST_SCRIPT = """
import hashlib, sys
from cliquegen import generate_source
for path in sys.argv[1:]:
    print(hashlib.sha256(generate_source(path).encode()).hexdigest())
"""


def test_output_is_identical_under_different_hash_seeds() -> None:
    paths = [SMALL, "specs/imagenet/cliquenet-s3.yaml", "specs/cifar10/ablation/cliquenet-x3.yaml"]
    runs = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT, *paths],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(result.stdout.split())
    here = [hashlib.sha256(generate_source(path).encode()).hexdigest() for path in paths]
    assert runs[0] == runs[1] == here


def ruff_problems(text: str) -> str:
    """What ruff (check with the project's rules, and format) says about generated text."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (make test installs the dev extras)")
    common = ["--isolated", "--line-length", str(LINE_LENGTH), "--stdin-filename", "model.py"]
    problems = []
    for command in (["check", "--select", RUFF_RULES, "--no-fix"], ["format", "--check", "--diff"]):
        result = subprocess.run([ruff, *command, *common, "-"], input=text, capture_output=True, text=True)
        if result.returncode != 0:
            problems.append(result.stdout + result.stderr)
    return "\n".join(problems)


def test_generated_files_pass_ruff() -> None:
    for path in sorted(GENERATED.glob("*.py")):
        assert not ruff_problems(path.read_text()), path


def test_a_module_reads_like_the_equations() -> None:
    text = (GENERATED / "cliquenet_k36_t12.py").read_text()
    assert "Spec: specs/cifar10/cliquenet-k36-t12.yaml" in text
    digest = hashlib.sha256((ROOT / SMALL).read_bytes()).hexdigest()
    assert f"sha256 of its file: {digest}" in text
    assert f'GENERATOR = "cliquegen {cliquegen.__version__}"' in text
    lines = text.splitlines()
    comment = lines.index("        # X3(2) = g(W13*X1(2) + W23*X2(2) + W43*X4(1))")
    assert lines[comment + 1].split() == [
        *("b1_x3_s2", "=", "update([b1_x1_s2,", "b1_x2_s2,", "b1_x4_s1],"),
        *("[block.w1_3,", "block.w2_3,", "block.w4_3],", "block.bn3_s2)"),
    ]
    assert "Model = CliquenetK36T12" in lines


def test_a_module_reads_model_first_with_the_runtime_after_it() -> None:
    text = (GENERATED / "cliquenet_k36_t12.py").read_text()
    tree = ast.parse(text)
    top = [node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
    assert top[:2] == ["TimmModel", "CliquenetK36T12"]  # its base, then the class, before the runtime
    assert top[2:4] == ["shared_weight", "conv2d"]
    assert top[-2:] == ["can_fold", "folded_bn_relu"]  # the inference fast path last
    assert text.index("class CliquenetK36T12") < text.index("# --- Runtime") < text.index("def clique_update")
    init = text[text.index("def __init__") : text.index("def forward_stem")]
    tf = 'init="truncated-normal-fan-in"'  # the spec states the authors' TF settings
    w12 = f"self.block1.w1_2 = shared_weight((36, 36, 3, 3), {tf}, **dd)  # W12"
    w21 = f"self.block1.w2_1 = shared_weight((36, 36, 3, 3), {tf}, **dd)  # W21"
    bn_x1_s2 = "self.block1.bn1_s2 = nn.BatchNorm2d(108, eps=0.001, momentum=0.001, **dd)  # BN of X1(2)"
    stage1, stage2 = init.index("# Stage I: X1(1) to X4(1)"), init.index("# Stage II: X1(2) to X4(2)")
    assert stage1 < init.index(w12) < stage2
    assert stage2 < init.index(w21)
    assert stage2 < init.index(bn_x1_s2)


def test_a_partial_last_stage_says_its_feature_holds_the_newest_value_of_each_layer() -> None:
    tree = ast.parse(generate_source("specs/cifar10/ablation/cliquenet-x2.yaml"))
    (model,) = (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "CliquenetX2")
    doc = " ".join(str(ast.get_docstring(model)).split())
    assert "Block 1: 5 layers of k=64, 2 stages, stage II updates only X1, X2," in doc
    assert "feature X0 + the newest value of each layer (X1, X2 of stage II, X3 to X5 of stage I)" in doc
    assert "X0 + stage II" not in doc and "stage II to the next block" not in doc


def test_statements_are_laid_out_as_ruff_format_lays_them_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our statement layout equals ruff's: one-line statements formatted by ruff give our bytes."""
    import cliquegen.emit.source as source

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (make test installs the dev extras)")
    paths = [SMALL, "specs/imagenet/cliquenet-s3.yaml", "specs/cifar10/ablation/cliquenet-x1.yaml"]
    ours = [generate_source(path) for path in paths]
    monkeypatch.setattr(source, "format_call", lambda indent, seq, width=0: [" " * indent + seq.flat()])
    for path, expected in zip(paths, ours, strict=True):
        flat = generate_source(path)
        assert flat != expected  # some statements were split
        command = [ruff, "format", "--isolated", "--line-length", str(LINE_LENGTH), "-"]
        formatted = subprocess.run(command, input=flat, capture_output=True, text=True, check=True).stdout
        assert formatted == expected


# --- standalone and safe -----------------------------------------------------------------------


def test_generated_modules_import_only_torch_and_the_standard_library() -> None:
    for path in sorted(GENERATED.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        roots = {name.split(".")[0] for name in imported}
        assert roots <= {"torch"} | set(sys.stdlib_module_names), (path, roots)


ISOLATED_SCRIPT = """
import importlib.util, sys
sys.modules["cliquegen"] = None  # any import of cliquegen now fails
import torch
spec = importlib.util.spec_from_file_location("generated_model", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.Model().eval()
with torch.no_grad():
    logits = model(torch.randn(2, *module.INPUT_SHAPE))
assert logits.shape == (2, module.NUM_CLASSES), logits.shape
assert not [name for name, m in sys.modules.items() if name.startswith("cliquegen") and m is not None]
print(type(model).__name__, tuple(logits.shape))
"""


def test_a_generated_module_runs_without_cliquegen(tmp_path: Path) -> None:
    module = tmp_path / "cliquenet_k36_t12.py"
    shutil.copy(GENERATED / module.name, module)
    result = subprocess.run(
        [sys.executable, "-I", "-c", ISOLATED_SCRIPT, str(module)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CliquenetK36T12 (2, 10)"


HOSTILE = (
    '""" \'\'\' "quoted" \\ \\n \\x41 \\\\" end"""\n'
    '__import__("os").system("touch x")\n'
    '"""; __import__(\'os\').system(\'touch y\'); x = """\r\n'
    "tab\there, form\x0cfeed, \u2028line separator, ünïcødé 漢字 \U0001f600, trailing space "
)


def module_statements(text: str) -> list[type]:
    return [type(node) for node in ast.parse(text).body]


def check_safe(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """The text compiles, defines only constants, functions and the class, and runs nothing."""
    tree = ast.parse(text)
    for node in tree.body[1:]:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.ClassDef)), node
        if isinstance(node, ast.Assign):
            assert not any(isinstance(inner, ast.Call) for inner in ast.walk(node.value))
    monkeypatch.chdir(tmp_path)
    module = exec_source(text, "hostile")
    assert not list(tmp_path.iterdir())
    return module


def test_hostile_description_and_path_reach_the_file_only_as_escaped_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = Spec.model_validate(
        {
            "name": "evil-net",
            "description": HOSTILE,
            "num_classes": 2,
            "blocks": [{"layers": 2, "channels": 2}],
        }
    )
    path = 'specs/"""evil\n\\.yaml'
    text = generate_source(spec, path=path)
    module = check_safe(text, tmp_path, monkeypatch)
    assert module.SPEC_DESCRIPTION == HOSTILE
    assert path == module.SPEC_PATH
    assert "touch x" in module.Model.__doc__  # shown, escaped, in the docstring
    assert not ruff_problems(text)
    model = module.Model()
    assert isinstance(model, torch.nn.Module)


@settings(max_examples=20)
@given(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=400),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=150),
)
def test_any_description_and_path_round_trip_and_pass_ruff(description: str, path: str) -> None:
    spec = Spec.model_validate(
        {
            "name": "any-net",
            "description": description,
            "num_classes": 2,
            "blocks": [{"layers": 2, "channels": 2}],
        }
    )
    text = generate_source(spec, path=path)
    namespace: dict = {}
    tree = ast.parse(text)
    constants = [node for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id != "Model"]
    exec(compile(ast.Module(constants, []), "<constants>", "exec"), namespace)  # literals only
    assert (namespace["SPEC_DESCRIPTION"], namespace["SPEC_PATH"]) == (description, path)
    assert not ruff_problems(text)


def test_a_spec_object_is_named_string_and_hashed_as_json() -> None:
    spec = load_spec(Path(ROOT / SMALL))
    text = generate_source(spec)
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    assert "Spec: <string>" in text and f"sha256 of its canonical JSON: {digest}" in text
    from_text = generate_source((ROOT / SMALL).read_text())
    assert "Spec: <string>" in from_text and "sha256 of its text" in from_text


# --- cliquegen build ---------------------------------------------------------------------------


def test_build_writes_nothing_when_one_spec_is_bad(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnum_classes: 2\nblocks: [{layers: 0, channels: 2}]\n")
    out = tmp_path / "out"
    assert main(["build", str(ROOT / SMALL), str(bad), "-o", str(out)]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err
    assert not out.exists()


def test_build_refuses_two_specs_for_one_module_and_a_file_as_folder(tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text((ROOT / SMALL).read_text())
    out = tmp_path / "out"
    assert main(["build", str(ROOT / SMALL), str(copy), "-o", str(out)]) == 2
    assert "cliquenet_k36_t12.py" in capsys.readouterr().err
    assert not out.exists()
    assert main(["build", str(ROOT / SMALL), "-o", str(copy)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_build_replaces_a_module_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    target = out / "cliquenet_k36_t12.py"
    out.mkdir(parents=True)
    target.write_text('"""old\n\nGenerated by cliquegen 0.0.1; do not edit."""\n')
    assert main(["build", str(ROOT / SMALL), "-o", str(out)]) == 0
    assert [path.name for path in out.iterdir()] == [target.name]
    assert target.read_text().startswith('"""cliquenet-k36-t12: ')


def test_build_keeps_a_module_cliquegen_did_not_write_unless_forced(tmp_path: Path, capsys) -> None:
    target = tmp_path / "cliquenet_k36_t12.py"
    target.write_text("# my own model\n")
    assert main(["build", str(ROOT / SMALL), "-o", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert target.read_text() == "# my own model\n"
    assert main(["build", str(ROOT / SMALL), "-o", str(tmp_path), "--force"]) == 0
    assert target.read_text().startswith('"""cliquenet-k36-t12: ')
    assert [path.name for path in tmp_path.iterdir()] == [target.name]
