"""Inference path of ``_runtime.bn_relu``: the same values as cat -> BN -> ReLU, both emitters."""

from __future__ import annotations

import pytest
import torch
from test_lowering import randomize_batchnorm
from test_memory_efficient import BOTTLENECK, CHANNELS_LAST

from cliquegen import create_model
from cliquegen.emit._runtime import bn_relu
from cliquegen.spec.model import Spec


def aten_ops(run) -> set[str]:
    from torch.profiler import profile

    with profile() as prof:
        run()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("emit", ["fx", "source"])
@pytest.mark.parametrize("spec", [BOTTLENECK, CHANNELS_LAST], ids=["bottleneck", "channels-last"])
def test_inference_path_equals_the_plain_steps(spec: Spec, emit: str) -> None:
    torch.manual_seed(0)
    model = create_model(spec, emit=emit).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    x = torch.randn(3, spec.input.channels, spec.input.height, spec.input.width)
    plain = model(x).detach()  # autograd on: cat -> BN -> ReLU
    assert "aten::addcmul" not in aten_ops(lambda: model(x))
    with torch.no_grad():
        fast = model(x)
        assert "aten::addcmul" in aten_ops(lambda: model(x))  # the inference path ran
    with torch.inference_mode():
        torch.testing.assert_close(model(x), fast, rtol=0, atol=0)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_bn_relu_writes_each_input_into_its_channels(memory_format: torch.memory_format) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, c, 5, 7, generator=generator).to(memory_format=memory_format) for c in (3, 1, 4)]
    bn = torch.nn.BatchNorm2d(8)
    randomize_batchnorm(bn, generator)
    bn.eval()
    expected = torch.relu(bn(torch.cat(inputs, 1))).detach()
    with torch.no_grad():
        got = bn_relu(inputs, bn)
    assert got.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    bn.train()  # training normalises with the batch statistics: the plain steps
    with torch.no_grad():
        torch.testing.assert_close(bn_relu(inputs, bn), torch.relu(bn(torch.cat(inputs, 1))))
