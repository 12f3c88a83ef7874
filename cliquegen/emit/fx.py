"""FX emitter: builds a ``torch.fx.Graph`` directly from the Program.

Building the graph ourselves (rather than tracing) keeps the Program's names, so
``gm.code`` reads ``b1_x3_s2 = ...``, and lets later passes place checkpoint calls.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir import ModuleDecl, Op, Program
from ._runtime import CONSTRUCTORS, bn_relu, checkpointed_update, linear

FEATURES = "features"  # name of the pooled feature vector (multi-scale, or the last block's) in every Program


def instantiate(decl: ModuleDecl) -> nn.Module | nn.Parameter:
    """Create a declared module with its initial weights (the policy lives in ``_runtime``)."""
    if decl.kind not in CONSTRUCTORS:
        raise ValueError(f"unknown module kind {decl.kind!r} for {decl.path!r}")
    return CONSTRUCTORS[decl.kind](**decl.args)


def build_root(program: Program) -> nn.Module:
    """The module tree that holds every declared module, in declaration order."""
    root = nn.Module()
    for path, decl in program.modules.items():
        parent = root
        *parents, leaf = path.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        value = instantiate(decl)
        if isinstance(value, nn.Parameter):
            parent.register_parameter(leaf, value)
        else:
            parent.add_module(leaf, value)
    return root


class CliqueNetGraphModule(fx.GraphModule):
    """A GraphModule with the model helpers users expect (timm style).

    ``forward_features`` returns the pooled features (B, num_features): multi-scale, or the
    last block's with head kind ``last``;
    ``forward_head`` applies the classifier to them.
    """

    def recompile(self) -> Any:
        result = super().recompile()
        features_graph = fx.Graph()
        values: dict[fx.Node, fx.Node] = {}
        features_graph.graph_copy(self.graph, values)
        (node,) = [values[n] for n in self.graph.nodes if n.name == FEATURES]
        features_graph.output(node)
        for unused in [n for n in reversed(features_graph.nodes) if n.op != "output" and not n.users]:
            features_graph.erase_node(unused)  # the classifier
        code = features_graph.python_code(root_module="self")
        namespace = dict(code.globals)
        exec(compile(code.src, "<cliquegen forward_features>", "exec"), namespace)  # noqa: S102 (our own FX code)
        type(self).forward_features = namespace["forward"]
        return result

    @property
    def num_features(self) -> int:
        return self.classifier.in_features

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.classifier(features)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier
        self.classifier = linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)


class _GraphWriter:
    """Appends the nodes of each op, naming the op's final node after the op."""

    def __init__(self, program: Program):
        self.graph = fx.Graph()
        self.env: dict[str, fx.Node] = {}
        self.attrs: dict[str, fx.Node] = {}
        self.program = program

    def get_attr(self, path: str) -> fx.Node:
        if path not in self.attrs:
            self.attrs[path] = self.graph.get_attr(path)
        return self.attrs[path]

    def node(self, op: str, target: Any, args: tuple, name: str, kwargs: dict | None = None) -> fx.Node:
        return self.graph.create_node(op, target, args, kwargs or {}, name=name)

    def emit(self, op: Op) -> None:
        x = [self.env[name] for name in op.inputs]
        n, a = op.name, op.attrs
        if op.kind == "input":
            out = self.graph.placeholder(n)
            if a.get("memory_format") == "channels_last":
                out = self.node(
                    "call_method",
                    "contiguous",
                    (out,),
                    f"{n}_channels_last",
                    {"memory_format": torch.channels_last},
                )
        elif op.kind == "call":
            out = self.node("call_module", a["module"], (x[0],), n)
        elif op.kind == "relu":
            out = self.node(
                "call_function", F.relu, (x[0],), n, {"inplace": True} if a.get("inplace") else {}
            )
        elif op.kind == "sigmoid":
            out = self.node("call_function", torch.sigmoid, (x[0],), n)
        elif op.kind == "cat":
            out = self.node("call_function", torch.cat, (x, 1), n)
        elif op.kind == "max_pool":
            out = self.node(
                "call_function", F.max_pool2d, (x[0], a["kernel_size"], a["stride"], a["padding"]), n
            )
        elif op.kind == "avg_pool":
            out = self.node("call_function", F.avg_pool2d, (x[0], a["kernel_size"]), n)
        elif op.kind == "global_pool":
            out = self.node("call_method", "mean", (x[0], (2, 3)), n)
        elif op.kind == "scale":
            gate = self.node(
                "call_method",
                "view",
                (x[1], -1, self.program.values[op.inputs[1]].shape[0], 1, 1),
                f"{n}_gate_map",
            )
            out = self.node("call_function", operator.mul, (x[0], gate), n)
        elif op.kind == "update":
            out = self.update(op, x)
        else:
            raise ValueError(f"FX emitter: unknown op kind {op.kind!r} ({op.name})")
        self.env[n] = out

    def update(self, op: Op, x: list[fx.Node]) -> fx.Node:
        """``_runtime.bn_relu`` (cat -> BN -> ReLU) -> conv(cat of shared W_ij) [-> dropout]
        [-> bottleneck]: the steps of ``_runtime.clique_update``; with ``memory_efficient``, one call of
        ``_runtime.checkpointed_update``, whose steps the backward pass recomputes."""
        n, a = op.name, op.attrs
        weights = [self.get_attr(path) for path in a["weights"]]
        weight = (
            weights[0] if len(weights) == 1 else self.node("call_function", torch.cat, (weights, 1), f"{n}_w")
        )
        relu = {"inplace": True}  # on BatchNorm's fresh output
        steps: list[tuple[str, Any, tuple, str, dict]] = []
        if a["dropout"]:
            steps.append(("call_module", a["dropout"], (), "drop", {}))
        if a["bottleneck_conv"]:
            steps.append(("call_module", a["bottleneck_bn"], (), "bottleneck_bn", {}))
            steps.append(("call_function", F.relu, (), "bottleneck_act", relu))
            steps.append(("call_module", a["bottleneck_conv"], (), "bottleneck", {}))
            if a["dropout"]:
                steps.append(("call_module", a["dropout"], (), "bottleneck_drop", {}))
        if a.get("memory_efficient"):  # one call, whose steps the backward pass recomputes
            bottleneck = None
            if a["bottleneck_conv"]:
                bottleneck = (self.get_attr(a["bottleneck_bn"]), self.get_attr(a["bottleneck_conv"]))
            dropout = self.get_attr(a["dropout"]) if a["dropout"] else None
            args = (x, weight, self.get_attr(a["bn"]), a["padding"], dropout, bottleneck)
            return self.node("call_function", checkpointed_update, args, n)
        conv_name = f"{n}_conv" if steps else n
        # ReLU(BN(cat(x))): the runtime's function, whose inference path skips the concatenation
        h: Any = self.node("call_function", bn_relu, (x, self.get_attr(a["bn"])), f"{n}_act")
        h = self.node("call_function", F.conv2d, (h, weight, None, 1, a["padding"]), conv_name)
        for index, (kind, target, extra, suffix, kwargs) in enumerate(steps):
            name = n if index == len(steps) - 1 else f"{n}_{suffix}"
            h = self.node(kind, target, (h, *extra), name, kwargs)
        return h


def build_graph(program: Program) -> fx.Graph:
    writer = _GraphWriter(program)
    for op in program.ops:
        writer.emit(op)
    writer.graph.output(writer.env[program.output])
    writer.graph.lint()
    return writer.graph


def emit_fx(program: Program, class_name: str = "CliqueNet") -> CliqueNetGraphModule:
    """A GraphModule computing the Program, with freshly initialised parameters."""
    return CliqueNetGraphModule(build_root(program), build_graph(program), class_name=class_name)
