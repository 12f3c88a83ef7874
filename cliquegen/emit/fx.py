"""FX emitter: builds a ``torch.fx.Graph`` directly from the Program.

Building the graph ourselves (rather than tracing) keeps the Program's names, so
``gm.code`` reads ``b1_x3_s2 = ...``, and lets later passes place checkpoint calls.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..compiler.ir import ModuleDecl, Op, Program
from ._runtime import CONSTRUCTORS, bn_relu, checkpointed_update, haar_dwt, haar_idwt, linear, take_blocks

FEATURES = "features"  # name of the pooled feature vector (multi-scale, or the last block's) in every Program


def instantiate(decl: ModuleDecl) -> nn.Module | nn.Parameter | torch.Tensor:
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
        elif isinstance(value, torch.Tensor):  # a constant: moves with the model, not in the state_dict
            parent.register_buffer(leaf, value, persistent=False)
        else:
            parent.add_module(leaf, value)
    return root


class CliqueNetGraphModule(fx.GraphModule):
    """A GraphModule with the model helpers users expect, and the methods timm calls.

    ``forward_features`` returns the pooled features (B, num_features): multi-scale, or the
    last block's with head kind ``last``; ``forward_head`` applies the classifier to them.
    ``forward_intermediates``, ``feature_info`` and ``prune_intermediate_layers`` give each
    block's output map (timm's ``features_only``); ``set_grad_checkpointing`` switches
    ``memory_efficient``.
    """

    program: Program  # what the graph was built from (set by emit_fx)
    feature_info: list[dict[str, Any]]  # per block: num_chs, reduction, module
    pruned: bool  # whether prune_intermediate_layers removed modules (forward no longer runs)

    def recompile(self) -> Any:
        result = super().recompile()
        # Functions of this graph's other outputs, compiled when first called.  Each instance
        # has its own class (torch.fx's), so this cache is the instance's, and it is not pickled.
        type(self).output_runs = {}
        return result

    def run_outputs(self, names: list[str], title: str) -> Callable[..., Any]:
        """A function ``(module, x)`` returning the named values of the graph (compiled once)."""
        key = tuple(names)
        if key not in self.output_runs:
            self.output_runs[key] = compile_outputs(self.graph, names, title)
        return self.output_runs[key]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.pruned:
            raise RuntimeError("the model was pruned by prune_intermediate_layers: it has no features")
        return self.run_outputs([FEATURES], "forward_features")(self, x)

    def __deepcopy__(self, memo: dict[int, Any]) -> CliqueNetGraphModule:
        twin = super().__deepcopy__(memo)  # keeps modules, graph and meta, not other attributes
        for key, value in self.__dict__.items():
            if key not in twin.__dict__:
                twin.__dict__[key] = copy.deepcopy(value, memo)
        return twin

    @property
    def num_features(self) -> int:
        return self.program.values[self.program.features].shape[0]

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features if isinstance(self.classifier, nn.Linear) else 0

    @property
    def in_chans(self) -> int:
        return next(op.shape[0] for op in self.program.ops if op.kind == "input")

    @property
    def memory_efficient(self) -> bool:
        """Whether the updates recompute their steps in the backward pass (set_grad_checkpointing)."""
        return any(op.attrs.get("memory_efficient") for op in self.program.ops if op.kind == "update")

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.classifier(features)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier (zero bias) for ``num_classes`` classes; with 0 none, so that
        ``forward`` returns the pooled features.  The pooling is always the average."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool={global_pool!r}: the head pools by averaging ('avg') only")
        if num_classes == 0:
            self.classifier = nn.Identity()
        else:
            weight = next(self.parameters())
            self.classifier = linear(self.num_features, num_classes).to(weight.device, weight.dtype)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for timm's layer-wise learning rates: the stem, then each block with
        its transition; the head and the classifier come last."""
        return {"stem": r"^stem\.", "blocks": r"^(?:block|transition)(\d+)\."}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch ``memory_efficient``: recompute each clique update in the backward pass."""
        ops = [
            dataclasses.replace(op, attrs={**op.attrs, "memory_efficient": enable})
            if op.kind == "update"
            else op
            for op in self.program.ops
        ]
        self.program = dataclasses.replace(self.program, ops=ops)
        self.graph = build_graph(self.program)  # recompiles; the parameters stay as they are

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The output map (B, C, H, W) of each block ``indices`` selects (timm's meaning: None
        every block, n the last n, a list those), with the pooled features unless
        ``intermediates_only``; then no block after the last selected one runs.  ``norm`` and
        ``stop_early`` are accepted for timm's signature: no norm layer follows the blocks,
        and the features need every block."""
        take, last = take_blocks(len(self.feature_info), indices, output_fmt)
        if not intermediates_only and self.pruned:
            raise RuntimeError("the model was pruned by prune_intermediate_layers: use intermediates_only")
        names = list(self.program.block_outputs)
        names = names[: last + 1] if intermediates_only else [*names, FEATURES]
        values = self.run_outputs(names, "forward_intermediates")(self, x)
        maps = [values[index] for index in take]
        return maps if intermediates_only else (values[-1], maps)

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Remove the modules that the selected blocks' output maps do not need (later blocks,
        the head; the classifier unless ``prune_head`` is false and every block stays).  The
        model then serves ``forward_intermediates(..., intermediates_only=True)`` only, as
        timm's ``features_only`` wrapper calls it (``forward`` returns the maps of every block
        kept).  Returns the block indices taken."""
        take, last = take_blocks(len(self.feature_info), indices)
        if last + 1 == len(self.feature_info) and not prune_head:
            return take
        graph = _subgraph(self.graph, list(self.program.block_outputs[: last + 1]))
        used = {node.target.split(".")[0] for node in graph.nodes if node.op in ("get_attr", "call_module")}
        for name in [name for name in self._modules if name not in used]:
            delattr(self, name)
        self.graph = graph  # forward now returns the maps; copies and pickles need no removed module
        self.feature_info = self.feature_info[: last + 1]
        self.pruned = True
        return take


def _subgraph(graph: fx.Graph, names: list[str]) -> fx.Graph:
    """A copy of ``graph`` returning the named nodes as a tuple (``features`` alone: that node),
    without the nodes they do not need."""
    sub = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    sub.graph_copy(graph, values)
    by_name = {node.name: values[node] for node in graph.nodes if node.name in names}
    outputs = [by_name[name] for name in names]
    sub.output(outputs[0] if names == [FEATURES] else tuple(outputs))
    for node in reversed(list(sub.nodes)):  # users come before the nodes they read
        if node.op not in ("output", "placeholder") and not node.users:
            sub.erase_node(node)
    return sub


def compile_outputs(graph: fx.Graph, names: list[str], title: str) -> Callable[..., Any]:
    """A function ``(module, x)`` computing the named nodes of ``graph`` (our own FX code)."""
    code = _subgraph(graph, names).python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<cliquegen {title}>", "exec"), namespace)  # noqa: S102 (our own FX code)
    return namespace["forward"]


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
        elif op.kind == "leaky_relu":
            out = self.node("call_function", F.leaky_relu, (x[0], a["negative_slope"]), n)
        elif op.kind == "conv":
            weights = [self.get_attr(path) for path in a["weights"]]
            weight = (
                weights[0]
                if len(weights) == 1
                else self.node("call_function", torch.cat, (weights, 1), f"{n}_w")
            )
            bias = self.get_attr(a["bias"]) if a["bias"] else None
            out = self.node("call_function", F.conv2d, (x[0], weight, bias, 1, a["padding"]), n)
        elif op.kind == "slice":
            index = (slice(None), slice(a["start"], a["end"]))
            out = self.node("call_function", operator.getitem, (x[0], index), n)
        elif op.kind == "add":
            out = self.node("call_function", operator.add, (x[0], x[1]), n)
        elif op.kind == "mul":
            out = self.node("call_function", operator.mul, (x[0], a["factor"]), n)
        elif op.kind == "shift":
            out = self.node("call_function", operator.add, (x[0], self.get_attr(a["constant"])), n)
        elif op.kind in ("dwt", "idwt"):
            out = self.node("call_function", haar_dwt if op.kind == "dwt" else haar_idwt, (x[0],), n)
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
    module = CliqueNetGraphModule(build_root(program), build_graph(program), class_name=class_name)
    module.program = program
    module.feature_info = program.feature_info()
    module.pruned = False
    return module
