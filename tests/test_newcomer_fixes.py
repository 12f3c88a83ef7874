"""What a newcomer tripped on: DDP's unused-parameter search, file modes, extending a finished
run, the progress bar and messages, a reader that closes the pipe early."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from strategies import specs
from torch import fx, nn

from cliquegen.models import build_fx, create_model
from cliquegen.spec.shipped import resolve_spec
from cliquegen.train.distributed import has_unused_parameters


def _unused_by_backward(model: nn.Module, spec) -> set[str]:
    """The parameters that get no gradient from one forward and backward pass: the truth."""
    model.train()
    x = torch.randn(2, spec.input.channels, spec.input.height, spec.input.width)
    model(x).float().sum().backward()
    return {name for name, p in model.named_parameters() if p.grad is None}


@pytest.mark.parametrize(
    "name", ["cliquenet-digits", "densenet-121", "cliquenet-x0", "cliquenet-k36-t12-untied"]
)
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_fx_models_use_every_parameter_and_ddp_is_told_so(name: str, memory_efficient: bool) -> None:
    model = create_model(name, memory_efficient=memory_efficient)
    assert not has_unused_parameters(model)
    if name == "cliquenet-digits":  # the others are too large to run here; their graphs are read
        assert _unused_by_backward(model, resolve_spec(name)) == set()


@settings(max_examples=15, deadline=None)
@given(specs(max_blocks=2, max_layers=4))
def test_the_flag_agrees_with_a_backward_pass(spec) -> None:
    model = build_fx(spec)
    assert has_unused_parameters(model) == bool(_unused_by_backward(model, spec))


def test_a_parameter_the_graph_never_reads_is_found() -> None:
    model = build_fx(resolve_spec("cliquenet-digits"))
    model.register_parameter("spare", nn.Parameter(torch.zeros(3)))
    assert has_unused_parameters(model)
    assert has_unused_parameters(nn.Linear(2, 2))  # not an FX graph: DDP must search
    assert isinstance(model, fx.GraphModule)
