"""memory_efficient: the same function, gradients and BatchNorm statistics, less memory."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from strategies import specs
from test_lowering import randomize_batchnorm

from cliquegen import create_model
from cliquegen.analysis.bench import saved_bytes
from cliquegen.emit._runtime import byte_mask_dropout
from cliquegen.spec.model import Spec
from cliquegen.spec.shipped import apply_overrides

BOTTLENECK = Spec.model_validate(
    {
        "name": "lean-bottleneck",
        "input": {"channels": 3, "height": 32, "width": 32},
        "num_classes": 5,
        "stem": {"kind": "imagenet", "channels": 8},
        "defaults": {"bottleneck": True, "dropout": 0.2, "schedule": {"stages": 3}, "feature": ["x0", 3]},
        "blocks": [{"layers": 3, "channels": 4}, {"layers": 4, "channels": 6}],
        "transition": {"attention": True},
        "head": {"compression": True},
    }
)

#: CIFAR-size maps: the model runs in channels-last memory.
CHANNELS_LAST = Spec.model_validate(
    {
        "name": "lean-cifar",
        "num_classes": 3,
        "stem": {"channels": 6},
        "defaults": {"dropout": 0.1},
        "blocks": [{"layers": 3, "channels": 4}, {"layers": 2, "channels": 4}],
    }
)


def pair(spec: Spec, emit: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The default model and its memory_efficient twin, with the same (randomized) state."""
    torch.manual_seed(0)
    default = create_model(spec, emit=emit)
    randomize_batchnorm(default, torch.Generator().manual_seed(1))
    lean = create_model(apply_overrides(spec, memory_efficient=True), emit=emit)
    lean.load_state_dict(default.state_dict())
    return default, lean


def check_train_step(spec: Spec, emit: str) -> None:
    default, lean = pair(spec, emit)
    x = torch.randn(3, spec.input.channels, spec.input.height, spec.input.width)
    outputs = []
    for model in (default, lean):
        model.train()
        torch.manual_seed(5)  # the same dropout masks, recomputation included
        out = model(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outputs.append(out.detach())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    grads = dict(default.named_parameters())
    for name, p in lean.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-5, msg=name)
    buffers = dict(default.named_buffers())
    for name, b in lean.named_buffers():  # running statistics updated once, not twice
        torch.testing.assert_close(b, buffers[name], rtol=1e-5, atol=1e-6, msg=name)
    for model in (default, lean):
        model.eval()
    with torch.no_grad():
        torch.testing.assert_close(lean(x), default(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("emit", ["fx", "source"])
@pytest.mark.parametrize("spec", [BOTTLENECK, CHANNELS_LAST], ids=["bottleneck", "channels-last"])
def test_same_outputs_gradients_and_statistics(spec: Spec, emit: str) -> None:
    check_train_step(spec, emit)


@settings(max_examples=6)
@given(specs(max_blocks=2, max_layers=4))
def test_random_specs(spec: Spec) -> None:
    for emit in ("fx", "source"):
        check_train_step(spec, emit)


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_intermediates_are_not_kept_for_backward(emit: str) -> None:
    default, lean = pair(BOTTLENECK, emit)
    x = torch.randn(2, 3, 32, 32)
    assert saved_bytes(lean, x) < 0.5 * saved_bytes(default, x)
    with torch.no_grad():  # nothing to recompute without gradients
        lean.train()(x)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_byte_mask_dropout_is_nn_dropout_keeping_a_bool_mask(memory_format: torch.memory_format) -> None:
    x = torch.randn(2, 6, 5, 5).contiguous(memory_format=memory_format).requires_grad_()
    dropout = torch.nn.Dropout(0.3).train()
    runs = []
    for step in (dropout, lambda h: byte_mask_dropout(h, dropout)):
        torch.manual_seed(7)
        saved: list[torch.Tensor] = []
        keep = saved.append
        with torch.autograd.graph.saved_tensors_hooks(lambda t, keep=keep: keep(t) or t, lambda t: t):
            out = step(x)
        (grad,) = torch.autograd.grad(out, x, torch.linspace(-1, 1, out.numel()).view_as(out))
        after = torch.rand(4)  # the random stream goes on from the same place
        runs.append((out, grad, after, [t.dtype for t in saved if t.numel() > 1]))
    (out, grad, after, kept), (lean_out, lean_grad, lean_after, lean_kept) = runs
    assert torch.equal(lean_out, out) and torch.equal(lean_grad, grad) and torch.equal(lean_after, after)
    assert lean_out.stride() == out.stride()
    assert (kept, lean_kept) == ([torch.float32], [torch.bool])
    assert 0 < (out == 0).sum() < out.numel()


def test_the_spec_option_reaches_both_emitters() -> None:
    spec = apply_overrides(BOTTLENECK, memory_efficient=True)
    assert spec.memory_efficient
    assert "checkpointed_update" in create_model(spec).code
    from cliquegen import generate_source

    assert "self.memory_efficient = True" in generate_source(spec)  # what each update reads
    assert "self.memory_efficient = False" in generate_source(BOTTLENECK)


def test_bench_command_reports_the_figures(capsys) -> None:
    """A smoke run of `cliquegen bench` (nothing is timed against a bound)."""
    import json

    from cliquegen.cli.main import main

    assert main(["bench", "cliquenet-digits", "--batch", "2", "--repeats", "1", "--no-rss", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["name"] == "cliquenet-digits" and figures["batch"] == 2
    assert 0 < figures["saved_bytes_memory_efficient"] < figures["saved_bytes"]
    assert figures["train"] > 0 and figures["inference"] > 0 and figures["peak_rss_growth"] is None


def test_bench_compiled_reports_first_calls_and_medians_beside_eager(tmp_path, monkeypatch) -> None:
    """The --compile figures, with dynamo's eager backend (no code generation, so no cache use)."""
    from cliquegen.analysis.bench import bench_compiled

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # restored afterwards; bench_compiled sets it

    torch.manual_seed(0)
    model = create_model(CHANNELS_LAST)
    figures = bench_compiled(model, torch.randn(2, 3, 32, 32), repeats=1, cache_dir=tmp_path, backend="eager")
    assert figures.compile_train > 0 and figures.compile_inference > 0
    assert min(figures.train, figures.inference, figures.eager_train, figures.eager_inference) > 0
    assert figures.cache_dir == str(tmp_path)
    assert set(figures.cache) == {"fx_graph_hit", "fx_graph_miss", "autograd_hit", "autograd_miss"}


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_memory_efficient_lists_the_same_state_dict_keys_in_the_same_order(emit: str) -> None:
    """With bottleneck and dropout: the checkpointed update fetches its modules in the order the
    plain update uses them, so a checkpoint's keys read the same either way."""
    plain = list(create_model(BOTTLENECK, emit="fx").state_dict())
    lean = list(create_model(apply_overrides(BOTTLENECK, memory_efficient=True), emit=emit).state_dict())
    assert lean == plain
