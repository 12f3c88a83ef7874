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
from unittest.mock import patch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import specs
from test_lowering import randomize_batchnorm

import cliquegen
from cliquegen import build_fx, compile_spec, generate_source, load_spec
from cliquegen.cli.main import main
from cliquegen.compiler.naming import class_name
from cliquegen.emit import rolled
from cliquegen.emit.build import build_source_model, exec_source
from cliquegen.emit.pytext import LINE_LENGTH
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


@settings(max_examples=25)
@given(specs())
def test_random_spec_source_equals_fx_with_every_block_run_by_a_clique_block(spec: Spec) -> None:
    with patch.object(rolled, "ROLL_FROM", 1):
        text = generate_source(spec)
    assert text.count(" = CliqueBlock(") == len(spec.blocks)
    assert "update(" not in text.split("# --- Runtime")[0]  # no update written out
    torch.manual_seed(0)
    fx = build_fx(spec)
    torch.manual_seed(0)
    source = exec_source(text, spec.module_name).Model()
    assert_same_model(fx, source)  # the same keys in the same order, the same initial weights
    randomize_batchnorm(fx, torch.Generator().manual_seed(1))
    source.load_state_dict(fx.state_dict())
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width)
    for training in (False, True):
        assert_same_outputs(fx, source, x, training)


ROLLED = {  # a block past ROLL_FROM with every option its CliqueBlock takes
    "name": "rolled-net",
    "input": {"channels": 3, "height": 8, "width": 8},
    "num_classes": 3,
    "stem": {"channels": 5},
    "memory_efficient": True,
    "norm": {"eps": 0.001, "momentum": 0.2},
    "init": {"conv": "truncated-normal-fan-in"},
    "blocks": [
        {
            "layers": 13,
            "channels": 3,
            "bottleneck": True,
            "bottleneck_width": 2,
            "share_weights": False,
            "dropout": 0.2,
            "schedule": {"stages": 3, "partial": 5, "order": [3, 1, 2, *range(4, 14)]},
            "feature": ["x0", 3],
            "transit": [1, 3],
        },
        {"layers": 2, "channels": 4, "dropout": 0.1},
    ],
    "head": {"compression": True},
}


def test_a_rolled_block_trains_as_the_fx_model_does() -> None:
    """Checkpointed updates, dropout, a widened bottleneck, per-stage weights, a partial last
    stage and an update order: the same losses, gradients and BatchNorm statistics."""
    spec = Spec.model_validate(ROLLED)
    text = generate_source(spec)
    assert text.count(" = CliqueBlock(") == 1  # block 2 (2 layers) stays written out
    assert not ruff_problems(text)
    torch.manual_seed(0)
    plain = build_fx(Spec.model_validate({**ROLLED, "memory_efficient": False}))
    torch.manual_seed(0)
    fx = build_fx(spec)  # its state_dict lists the modules as its checkpointed calls read them
    torch.manual_seed(0)
    source = exec_source(text, spec.module_name).Model()
    assert_same_model(plain, source)
    assert {"block1.w0_3_s1", "block1.bottleneck3_s2.weight"} <= set(source.state_dict())
    x = torch.randn(4, 3, 8, 8)
    for model in (fx, source):
        model.train()
        torch.manual_seed(3)  # the same dropout masks
        model(x).square().sum().backward()
    expected, got = fx.state_dict(), source.state_dict()
    assert sorted(expected) == sorted(got)
    for key in expected:  # the running statistics
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    parameters = dict(source.named_parameters())
    for name, parameter in fx.named_parameters():
        torch.testing.assert_close(parameters[name].grad, parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_clique_block_compiles_as_one_graph_and_exports() -> None:
    spec = Spec.model_validate(
        {
            "name": "tiny-rolled",
            "input": {"channels": 3, "height": 8, "width": 8},
            "num_classes": 3,
            "stem": {"channels": 4},
            "memory_efficient": True,
            "defaults": {"bottleneck": True, "dropout": 0.1},
            "blocks": [{"layers": 3, "channels": 3}, {"layers": 2, "channels": 4}],
        }
    )
    with patch.object(rolled, "ROLL_FROM", 1):
        model = build_source_model(spec)
    x = torch.randn(2, 3, 8, 8)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        compiled(x).sum().backward()  # checkpointed updates, dropout
        assert all(p.grad is not None for p in model.parameters())
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
            exported = torch.export.export(model, (x,))
            torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.reset()


def test_a_large_block_is_a_schedule_table_that_shows_each_update() -> None:
    text = (GENERATED / "densenet_121.py").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class DenseNet121("))
    assert len(lines) - start < 800  # the class and its runtime; timm's interface (the same in all) precedes
    assert text.count("shared_weight((") == 21  # block 1 (6 layers) written out; the rest in CliqueBlocks
    assert "        self.block3 = CliqueBlock(" in lines
    row = "                (24, 1),  # X24(1) = g(W0,24*X0 + W1,24*X1(1) + ... + W23,24*X23(1))"
    assert row in lines
    assert "        after = self.block3(b3_x0, self.memory_efficient)" in lines
    assert "        b3_transit = torch.cat([b3_x0, *after[1]], 1)  # (B, 1024, 14, 14)" in lines
    stage_two = (GENERATED / "cliquenet_k12_t36.py").read_text().splitlines()
    assert "                # Stage II" in stage_two
    row = "                (3, 2),  # X3(2) = g(W13*X1(2) + W23*X2(2) + W43*X4(1) + ... + W12,3*X12(1))"
    assert row in stage_two
    assert "        b1_feature = torch.cat([b1_x0, *after[2]], 1)  # (B, 208, 32, 32)" in stage_two
    small = (GENERATED / "cliquenet_k36_t12.py").read_text()
    assert "CliqueBlock" not in small  # blocks under ROLL_FROM layers are written out


def test_create_model_emits_source_with_the_model_helpers() -> None:
    model = cliquegen.create_model("cliquenet-k36-t12", emit="source", num_classes=7)
    assert type(model).__name__ == "CliqueNetK36T12"
    assert model.num_features == 784
    model.reset_classifier(3)
    assert model.classifier.out_features == 3 and not model.classifier.bias.any()
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cliquenet-k36-t12", "CliqueNetK36T12"),
        ("densenet-121", "DenseNet121"),
        ("densenet121", "DenseNet121"),
        ("densenet-bc-k12-t96", "DenseNetBcK12T96"),
        ("my-net2", "MyNet2"),
        ("net--b", "NetB"),
    ],
)
def test_class_names_are_camel_case_with_the_families_as_their_papers_write_them(
    name: str, expected: str
) -> None:
    spec = Spec.model_validate({"name": name, "num_classes": 2, "blocks": [{"layers": 2, "channels": 2}]})
    assert class_name(spec) == expected


def test_the_class_docstring_says_what_the_network_is() -> None:
    densenet = ast.parse((GENERATED / "densenet_121.py").read_text())
    base, model, layer, block = (node for node in densenet.body if isinstance(node, ast.ClassDef))
    names = (base.name, model.name, layer.name, block.name)
    assert names == ("TimmModel", "DenseNet121", "Layer", "CliqueBlock")
    assert str(ast.get_docstring(model)).startswith("The DenseNet ``densenet-121``.")
    clique = ast.parse((GENERATED / "cliquenet_k36_t12.py").read_text())
    _, model, _ = (node for node in clique.body if isinstance(node, ast.ClassDef))
    assert str(ast.get_docstring(model)).startswith("The CliqueNet ``cliquenet-k36-t12``.")


def test_a_transition_drops_out_at_the_rate_of_the_block_before_it_as_the_fx_model_does() -> None:
    spec = Spec.model_validate(
        {
            "name": "rates",
            "input": {"channels": 3, "height": 8, "width": 8},
            "num_classes": 2,
            "stem": {"channels": 4},
            "blocks": [
                {"layers": 2, "channels": 3, "dropout": 0.0},
                {"layers": 2, "channels": 3, "dropout": 0.5},
                {"layers": 2, "channels": 3, "dropout": 0.1},
            ],
            "head": {"compression": True},
        }
    )
    text = generate_source(spec)
    assert "t1_drop" not in text  # block 1 has no dropout, so neither has transition 1
    assert "t2_drop = self.block2.dropout(t2_conv)  # (B, 6, 4, 4), at block 2's rate" in text
    head = "h3_compress_drop = self.block3.dropout(h3_compress_conv)  # (B, 6, 2, 2), at block 3's rate"
    assert head in text
    assert "dropout at the rate of the block before," in text
    fx = build_fx(spec)
    source = exec_source(text, "rates").Model()
    source.load_state_dict(fx.state_dict())
    assert_same_outputs(fx, source, torch.randn(4, 3, 8, 8), training=True)


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
    assert "Model = CliqueNetK36T12" in lines


def test_a_module_reads_model_first_with_the_runtime_after_it() -> None:
    text = (GENERATED / "cliquenet_k36_t12.py").read_text()
    tree = ast.parse(text)
    top = [node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
    assert top[:2] == ["TimmModel", "CliqueNetK36T12"]  # its base, then the class, before the runtime
    assert top[2:4] == ["shared_weight", "conv2d"]
    assert top[-2:] == ["can_fold", "folded_bn_relu"]  # the inference fast path last
    assert text.index("class CliqueNetK36T12") < text.index("# --- Runtime") < text.index("def clique_update")
    init = text[text.index("def __init__") : text.index("def forward_stem")]
    tf = 'init="truncated-normal-fan-in"'  # the spec states the authors' TF settings
    w12 = f"self.block1.w1_2 = shared_weight((36, 36, 3, 3), {tf}, **dd)  # W12"
    w21 = f"self.block1.w2_1 = shared_weight((36, 36, 3, 3), {tf}, **dd)  # W21"
    bn_x1_s2 = (
        "self.block1.bn1_s2 = nn.BatchNorm2d(108, eps=0.001, momentum=0.001, **dd)  # BN of X1(2)'s inputs"
    )
    stage1, stage2 = init.index("# Stage I: X1(1) to X4(1)"), init.index("# Stage II: X1(2) to X4(2)")
    assert stage1 < init.index(w12) < stage2
    assert stage2 < init.index(w21)
    assert stage2 < init.index(bn_x1_s2)


def test_a_partial_last_stage_says_its_feature_holds_the_newest_value_of_each_layer() -> None:
    tree = ast.parse(generate_source("specs/cifar10/ablation/cliquenet-x2.yaml"))
    (model,) = (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "CliqueNetX2")
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
    assert result.stdout.strip() == "CliqueNetK36T12 (2, 10)"


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


def test_the_header_names_where_the_spec_came_from() -> None:
    loaded = load_spec(ROOT / SMALL, path=str(SMALL))
    digest = hashlib.sha256((ROOT / SMALL).read_bytes()).hexdigest()
    text = generate_source(loaded)  # a loaded Spec remembers its file: nothing is read again
    assert f"Spec: {SMALL}" in text and f"sha256 of its file: {digest}" in text
    from_text = generate_source((ROOT / SMALL).read_text())
    assert "Spec: <string>" in from_text and f"sha256 of its text: {digest}" in from_text
    made = Spec.model_validate(loaded.model_dump())  # made in Python: no file, no text
    canonical = made.model_dump_json(indent=2, exclude_unset=True) + "\n"
    assert made.provenance.text == canonical
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert f"Spec: <string>\nsha256 of its canonical JSON: {digest}" in generate_source(made)


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
