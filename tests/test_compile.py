"""Generated models under torch.compile(fullgraph=True) and torch.export, both emitters.

fullgraph=True proves TorchDynamo captures the whole forward without a graph break; the
"aot_eager" backend also traces it through AOTAutograd (forward and backward) but skips
inductor's C++ code generation, which takes minutes on two cores.
"""

from __future__ import annotations

import pytest
import torch

from cliquegen import create_model
from cliquegen.spec.model import Spec
from cliquegen.spec.shipped import apply_overrides

TINY = Spec.model_validate(
    {
        "name": "tiny-compile",
        "input": {"channels": 3, "height": 16, "width": 16},
        "num_classes": 4,
        "stem": {"channels": 4},
        "defaults": {"bottleneck": True, "dropout": 0.1},
        "blocks": [{"layers": 3, "channels": 3}, {"layers": 2, "channels": 4}],
        "transition": {"attention": True},
        "head": {"compression": True},
    }
)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["default", "memory-efficient"])
@pytest.mark.parametrize("emit", ["fx", "source"])
def test_compile_fullgraph(emit: str, memory_efficient: bool) -> None:
    torch.manual_seed(0)
    model = create_model(apply_overrides(TINY, memory_efficient=memory_efficient), emit=emit)
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    model.train()
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("emit", ["fx", "source"])
def test_export(emit: str) -> None:
    torch.manual_seed(0)
    model = create_model(TINY, emit=emit).eval()
    x = torch.randn(2, 3, 16, 16)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-5)
