"""The benchmarks' baseline computes what the generated model computes, so timing them side by
side compares two implementations of one function."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baseline import baseline_model
from cliquegen import create_model
from cliquegen.spec.model import Spec

CIFAR = {
    "name": "baseline-cifar",
    "num_classes": 4,
    "stem": {"channels": 8},
    "defaults": {"dropout": 0.2, "schedule": {"stages": 2}, "feature": ["x0", 2], "transit": 2},
    "blocks": [{"layers": 3, "channels": 4}, {"layers": 2, "channels": 6}],
    "norm": {"eps": 1e-3, "momentum": 0.001},
}
IMAGENET = {
    "name": "baseline-imagenet",
    "input": {"channels": 3, "height": 32, "width": 32},
    "num_classes": 5,
    "stem": {"kind": "imagenet", "channels": 8},
    "defaults": {"bottleneck": True, "schedule": {"stages": 2}, "feature": ["x0", 2], "transit": 2},
    "blocks": [{"layers": 3, "channels": 4}, {"layers": 2, "channels": 6}],
    "transition": {"attention": True},
    "head": {"compression": True},
}


@pytest.mark.parametrize("raw", [CIFAR, IMAGENET], ids=["cifar-norm", "imagenet-bottleneck"])
def test_baseline_computes_the_generated_function(raw: dict) -> None:
    spec = Spec.model_validate(raw)
    torch.manual_seed(0)
    model = create_model(spec)
    with torch.no_grad():  # running statistics away from 0 and 1, so eps and their use show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(1e-3, 2e-3)
    baseline = baseline_model(spec, model.state_dict())
    x = torch.randn(2, 3, spec.input.height, spec.input.width)
    model.eval()
    baseline.eval()
    with torch.no_grad():
        torch.testing.assert_close(baseline(x), model(x), rtol=1e-4, atol=1e-5)
    for net in (model, baseline):  # batch statistics; dropout off (the models lay out its noise differently)
        net.train()
        for module in net.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
    torch.testing.assert_close(baseline(x), model(x), rtol=1e-4, atol=1e-5)
    ours = {name: b for name, b in model.named_buffers() if name.endswith("running_var")}
    theirs = [b for name, b in baseline.named_buffers() if name.endswith("running_var")]
    assert sorted(b.sum().item() for b in theirs) == pytest.approx(
        sorted(b.sum().item() for b in ours.values())
    )
