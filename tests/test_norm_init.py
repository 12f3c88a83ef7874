"""The spec keys ``norm`` and ``init``: the shipped CIFAR specs build the authors' TensorFlow
settings, the ImageNet specs and every spec that does not say keep PyTorch's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cliquegen import compile_spec, create_model, load_spec
from cliquegen.emit.build import generate_source
from cliquegen.spec.shipped import shipped_specs

#: The std a normal cut at two std keeps: sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_STD = math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


def test_a_shipped_cifar_model_has_the_authors_tf_settings() -> None:
    torch.manual_seed(0)
    model = create_model("cliquenet-k36-t12-a")  # with attention: Glorot for fc1, fc2 and the classifier
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all((m.eps, m.momentum) == (1e-3, 1e-3) for m in norms)

    convs = [(name, p) for name, p in model.named_parameters() if p.dim() == 4]
    assert any(name.startswith("block1.w0_") for name, _ in convs) and any("stem" in n for n, _ in convs)
    scaled = []
    for name, weight in convs:  # each W_ij over its own fan-in
        scale = math.sqrt(2.6 / weight[0].numel())
        assert weight.abs().max() <= 2 * scale + 1e-7, name  # cut at two std
        scaled.append((weight / scale).flatten())
    pooled = torch.cat(scaled)
    assert pooled.mean().abs() < 0.01
    assert pooled.std().item() == pytest.approx(TRUNCATED_STD, rel=0.01)  # about sqrt(2 / fan_in)

    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {"classifier", "transition1.attention.fc1", "transition2.attention.fc2"} <= set(linears)
    for name, layer in linears.items():
        fan_out, fan_in = layer.weight.shape
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= limit, name
        assert torch.count_nonzero(layer.bias) == 0, name
    classifier = linears["classifier"].weight
    limit = math.sqrt(6 / sum(classifier.shape))
    assert classifier.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)  # uniform on [-l, l]


def test_every_shipped_cifar_spec_states_them_and_imagenet_keeps_pytorch() -> None:
    for name, path in shipped_specs().items():
        spec = load_spec(path)
        if "/cifar10/" in path.as_posix() and name.startswith("cliquenet"):
            assert (spec.norm.eps, spec.norm.momentum) == (1e-3, 1e-3), name
            assert (spec.init.conv, spec.init.linear) == ("truncated-normal-fan-in", "glorot-uniform"), name
        elif "/imagenet/" in path.as_posix():
            assert spec.norm.eps == 1e-5 and spec.init.conv == "kaiming-normal-fan-out", name
            decls = compile_spec(spec).program.modules.values()
            assert not any({"eps", "momentum", "init"} & set(d.args) for d in decls), name


def test_specs_that_do_not_say_build_what_they_did_before() -> None:
    text = load_spec(shipped_specs()["cliquenet-k36-t12"]).model_dump(exclude={"norm", "init"})
    plain = load_spec(__import__("json").dumps(text))
    torch.manual_seed(0)
    model = create_model(plain)
    assert all((m.eps, m.momentum) == (1e-5, 0.1) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    w = model.get_parameter("block1.w0_1")
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)  # He normal over the fan-out
    assert w.abs().max() > 2 * math.sqrt(2.6 / w[0].numel())  # not cut


def test_the_generated_code_shows_them() -> None:
    source = generate_source(shipped_specs()["cliquenet-k36-t12"])
    assert "nn.BatchNorm2d(64, eps=0.001, momentum=0.001, **dd)" in source
    assert 'shared_weight((36, 64, 3, 3), init="truncated-normal-fan-in", **dd)' in source
    assert 'linear(784, 10, init="glorot-uniform", **dd)' in source
