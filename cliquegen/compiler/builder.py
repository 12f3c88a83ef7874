"""The Program under construction: declares modules and appends ops, tracking shapes and MACs.

Shared by the lowering of classification networks (:mod:`.lower`), of image networks
(:mod:`.network`) and of every block (:mod:`.lower_blocks`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..spec.model import InitSpec, NormSpec
from .ir import ModuleDecl, Op


class ProgramBuilder:
    """Declares modules and appends ops, tracking shapes and MACs."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleDecl] = {}
        self.ops: list[Op] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.part = ""

    def module(self, path: str, kind: str, **args: Any) -> str:
        if path not in self.modules:
            self.modules[path] = ModuleDecl(path, kind, args)
        return path

    def op(
        self,
        name: str,
        kind: str,
        inputs: tuple[str, ...] | list[str] = (),
        *,
        shape: tuple[int, ...],
        macs: int = 0,
        comment: str | None = None,
        **attrs: Any,
    ) -> str:
        self.ops.append(Op(name, kind, tuple(inputs), attrs, self.part, comment, shape, macs))
        self.shapes[name] = shape
        return name

    def call(
        self, name: str, module: str, x: str, *, shape: tuple[int, ...] | None = None, macs: int = 0
    ) -> str:
        return self.op(name, "call", (x,), shape=shape or self.shapes[x], macs=macs, module=module)

    def cat(self, name: str, inputs: list[str], comment: str | None = None) -> str:
        if len(inputs) == 1:
            return inputs[0]
        channels = sum(self.shapes[x][0] for x in inputs)
        return self.op(name, "cat", inputs, shape=(channels, *self.shapes[inputs[0]][1:]), comment=comment)

    def bn_relu(self, name: str, module: str, x: str) -> str:
        self.module(module, "batch_norm", num_features=self.shapes[x][0])
        h = self.call(f"{name}_bn", module, x)
        return self.op(f"{name}_relu", "relu", (h,), shape=self.shapes[x], inplace=True)  # only it reads h

    def conv(self, name: str, module: str, x: str, out: int, kernel: int, stride: int = 1) -> str:
        c, h, w = self.shapes[x]
        padding = kernel // 2
        self.module(
            module,
            "conv2d",
            in_channels=c,
            out_channels=out,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
        )
        h, w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
        return self.call(name, module, x, shape=(out, h, w), macs=c * out * kernel * kernel * h * w)

    def linear(self, name: str, module: str, x: str, out: int) -> str:
        (features,) = self.shapes[x]
        self.module(module, "linear", in_features=features, out_features=out)
        return self.call(name, module, x, shape=(out,), macs=features * out)

    def dropout(self, name: str, module: str | None, x: str) -> str:
        return x if module is None else self.call(name, module, x)

    def biased_conv(self, name: str, module: str, x: str, out: int, kernel: int, *, bias: bool = True) -> str:
        """A convolution module with "same" padding and (by default) a bias: ``conv`` modules."""
        c, h, w = self.shapes[x]
        self.module(module, "conv", in_channels=c, out_channels=out, kernel_size=kernel, bias=bias)
        return self.call(name, module, x, shape=(out, h, w), macs=c * out * kernel * kernel * h * w)

    def activation(self, name: str, x: str, act: str, slope: float, module: str) -> str:
        """ReLU (in place: ``x`` must be a fresh value only this op reads), PReLU with one slope
        per channel (the module ``module``), or LeakyReLU with ``slope``."""
        if act == "relu":
            return self.op(name, "relu", (x,), shape=self.shapes[x], inplace=True)
        if act == "prelu":
            self.module(module, "prelu", num_parameters=self.shapes[x][0])
            return self.call(name, module, x)
        if act == "leaky_relu":
            return self.op(name, "leaky_relu", (x,), shape=self.shapes[x], negative_slope=slope)
        raise AssertionError(f"unknown activation {act!r}")


def with_norm_and_init(decl: ModuleDecl, norm: NormSpec, init: InitSpec) -> ModuleDecl:
    """The spec's ``norm`` and ``init`` settings as constructor arguments, where they differ
    from the defaults (so a spec that does not set them declares exactly what it did before).
    BatchNorm takes eps and momentum together: its constructor's arguments are positional."""
    if decl.kind == "batch_norm" and norm != NormSpec():
        extra: dict[str, Any] = {"eps": norm.eps, "momentum": norm.momentum}
    elif decl.kind in ("weight", "conv2d", "conv") and init.conv != InitSpec().conv:
        extra = {"init": init.conv}
    elif decl.kind == "linear" and init.linear != InitSpec().linear:
        extra = {"init": init.linear}
    else:
        return decl
    return replace(decl, args={**decl.args, **extra})
