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
from ._interface import TimmModel, head_map, pruned_multiscale
from ._runtime import (
    CONSTRUCTORS,
    as_interface,
    bicubic_upsample,
    bn_relu,
    checkpointed_update,
    haar_dwt,
    haar_idwt,
    makes_tensors,
)

FEATURES = "features"  # name of the pooled feature vector (multi-scale, or the last block's) in every Program


def instantiate(
    decl: ModuleDecl, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module | nn.Parameter | torch.Tensor:
    """Create a declared module with its initial weights (the policy lives in ``_runtime``), its
    tensors made on ``device`` in ``dtype``."""
    if decl.kind not in CONSTRUCTORS:
        raise ValueError(f"unknown module kind {decl.kind!r} for {decl.path!r}")
    factory = {"device": device, "dtype": dtype} if makes_tensors(decl.kind) else {}
    return CONSTRUCTORS[decl.kind](**decl.args, **factory)


def build_root(
    program: Program, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """The module tree that holds every declared module, in declaration order."""
    root = nn.Module()
    for path, decl in program.modules.items():
        parent = root
        *parents, leaf = path.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        value = instantiate(decl, device, dtype)
        if isinstance(value, nn.Parameter):
            parent.register_parameter(leaf, value)
        elif isinstance(value, torch.Tensor):  # a constant: moves with the model, not in the state_dict
            parent.register_buffer(leaf, value, persistent=False)
        else:
            parent.add_module(leaf, value)
    return root


def head_branches(program: Program) -> list[str]:
    """The maps the head pools into the features: each block's branch of a multi-scale head, or
    the last block's with head kind ``last`` (the inputs of the global pools of ``features``)."""
    features = program.values[program.features]
    pools = [program.values[name] for name in features.inputs] if features.kind == "cat" else [features]
    if any(op.kind != "global_pool" for op in pools):
        raise AssertionError(f"{program.features} is not made of global pools")
    return [op.inputs[0] for op in pools]


class CliqueNetGraphModule(TimmModel, fx.GraphModule):
    """A GraphModule with the model helpers users expect, and timm's model interface
    (:class:`~._interface.TimmModel`).

    ``forward`` is the graph: the Program's, or with ``global_pool`` ``""`` or after
    ``prune_intermediate_layers`` one that ends as ``forward_head(forward_features(x))`` does
    (``refresh_forward``).  ``forward_blocks`` and thus ``forward_features`` and
    ``forward_intermediates`` run functions compiled from the whole Program's graph for the
    values they need.  ``set_grad_checkpointing`` switches ``memory_efficient``.
    """

    # Python-side state: TorchScript compiles the graph's forward and needs none of it.
    __jit_unused_properties__ = [*fx.GraphModule.__jit_unused_properties__, "num_classes", "memory_efficient"]
    __jit_ignored_attributes__ = ["program", "feature_info", "output_runs"]

    def __prepare_scriptable__(self) -> CliqueNetGraphModule:
        """``torch.jit.script`` calls this first: the runtime functions the graph calls take
        modules through a TorchScript interface."""
        as_interface()
        return self

    def recompile(self) -> Any:
        result = super().recompile()
        # Functions of this graph's other outputs, compiled when first called.  Each instance
        # has its own class (torch.fx's), so this cache is the instance's, and it is not pickled.
        type(self).output_runs = {}
        return result

    def run_outputs(self, names: list[str], title: str) -> Callable[..., Any]:
        """A function ``(module, x)`` returning the named values of the Program as a tuple."""
        key = tuple(names)
        if key not in self.output_runs:
            self.output_runs[key] = compile_outputs(build_graph(self.program), names, title)
        return self.output_runs[key]

    def forward_blocks(
        self,
        x: torch.Tensor,
        last: int,
        maps: list[torch.Tensor] | None = None,
        head_maps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor | None:
        """Runs the stem and the blocks up to block ``last`` (0-based), appending the map each
        block hands on to ``maps`` and each head branch's map to ``head_maps`` when given;
        returns the pooled features, or None when ``last`` is not the last block."""
        complete = last + 1 == len(self.program.block_outputs)
        names = list(self.program.block_outputs[: last + 1]) if maps is not None else []
        branches = head_branches(self.program) if complete and head_maps is not None else []
        names += [*branches, FEATURES] if complete else []
        values = list(self.run_outputs(names, "forward_blocks")(self, x)) if names else []
        if maps is not None:
            maps += values[: last + 1]
        if head_maps is not None:
            head_maps += values[len(values) - 1 - len(branches) : -1]
        return values[-1] if complete else None

    def refresh_forward(self) -> None:
        self.graph = forward_graph(self.program, self.global_pool, self.num_blocks, self.classifier)

    def remove_after_block(self, last: int) -> None:
        graph = _subgraph(build_graph(self.program), list(self.program.block_outputs[: last + 1]))
        used = {node.target.split(".")[0] for node in graph.nodes if node.op in ("get_attr", "call_module")}
        for name in [name for name in self._modules if name not in used]:
            delattr(self, name)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its modules and the state its graphs are built from: torch.fx's own pickling
        traces the code again, which the runtime functions of the head do not survive, and gives
        back a plain GraphModule."""
        state = {key: self.__dict__[key] for key in _STATE}
        return (_unpickle, (dict(self._modules), type(self).__name__, state, self.training))

    def __deepcopy__(self, memo: dict[int, Any]) -> CliqueNetGraphModule:
        return with_attributes_of(self, super().__deepcopy__(memo), memo)

    @property
    def memory_efficient(self) -> bool:
        """Whether the updates recompute their steps in the backward pass (set_grad_checkpointing)."""
        return any(op.attrs.get("memory_efficient") for op in self.program.ops if op.kind == "update")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch ``memory_efficient``: recompute each clique update in the backward pass."""
        ops = [
            dataclasses.replace(op, attrs={**op.attrs, "memory_efficient": enable})
            if op.kind == "update"
            else op
            for op in self.program.ops
        ]
        self.program = dataclasses.replace(self.program, ops=ops)
        self.refresh_forward()  # recompiles; the parameters stay as they are


#: What a model holds besides its modules and graph (set by emit_fx, changed by TimmModel).
_STATE = (
    "program",
    "feature_info",
    "num_blocks",
    "multiscale",
    "pruned",
    "global_pool",
    "num_features",
    "head_hidden_size",
    "in_chans",
)


def with_attributes_of(module: fx.GraphModule, twin: fx.GraphModule, memo: dict[int, Any]) -> Any:
    """``twin`` (``fx.GraphModule.__deepcopy__`` of ``module``, which keeps modules, graph and
    meta) given deep copies of ``module``'s other attributes (the Program, the head's settings)."""
    for key, value in module.__dict__.items():
        if key not in twin.__dict__:
            twin.__dict__[key] = copy.deepcopy(value, memo)
    return twin


def _unpickle(
    modules: dict[str, nn.Module], class_name: str, state: dict[str, Any], training: bool
) -> CliqueNetGraphModule:
    root = nn.Module()
    for name, module in modules.items():
        root.add_module(name, module)
    model = CliqueNetGraphModule(root, fx.Graph(), class_name=class_name)
    model._modules.clear()  # the modules as they were, unused ones too, in their order
    model._modules.update(modules)
    model.__dict__.update(state)
    model.training = training
    model.refresh_forward()
    return model


def _subgraph(graph: fx.Graph, names: list[str]) -> fx.Graph:
    """A copy of ``graph`` returning the named nodes as a tuple, without the nodes they do not
    need."""
    sub = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    sub.graph_copy(graph, values)
    by_name = {node.name: values[node] for node in graph.nodes if node.name in names}
    sub.output(tuple(by_name[name] for name in names))
    _drop_unused(sub)
    return sub


def _drop_unused(graph: fx.Graph) -> None:
    for node in reversed(list(graph.nodes)):  # users come before the nodes they read
        if node.op not in ("output", "placeholder") and not node.users:
            graph.erase_node(node)


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
        elif op.kind == "upsample":
            out = self.node("call_function", bicubic_upsample, (x[0], a["scale"]), n)
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
            # modules fetched in the order the plain update uses them, which is the order the
            # GraphModule copies them in: the state_dict then lists its keys as without
            bn = self.get_attr(a["bn"])
            dropout = self.get_attr(a["dropout"]) if a["dropout"] else None
            bottleneck = None
            if a["bottleneck_conv"]:
                bottleneck = (self.get_attr(a["bottleneck_bn"]), self.get_attr(a["bottleneck_conv"]))
            args = (x, weight, bn, a["padding"], dropout, bottleneck)
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
    """The Program's graph: the input to the logits."""
    writer = _GraphWriter(program)
    for op in program.ops:
        writer.emit(op)
    writer.graph.output(writer.env[program.output])
    writer.graph.lint()
    return writer.graph


def forward_graph(
    program: Program, global_pool: str = "avg", num_blocks: int | None = None, classifier: Any = None
) -> fx.Graph:
    """The graph ``forward`` runs: the Program's, while every block runs and the head pools by
    averaging; else the nodes of ``TimmModel.forward``: ``forward_features``' map (the head's,
    or the last kept block's) through ``forward_head``.  A head that reads every block, with
    blocks pruned, leaves a graph that raises as ``forward_features`` does."""
    blocks = len(program.block_outputs) if num_blocks is None else num_blocks
    complete = blocks == len(program.block_outputs)
    if complete and global_pool == "avg":
        return build_graph(program)
    writer = _GraphWriter(program)
    for op in program.ops:
        writer.emit(op)
    graph, env = writer.graph, writer.env
    if complete:
        branches = [env[name] for name in head_branches(program)]
        x = branches[0]
        if len(branches) > 1:
            x = writer.node("call_function", head_map, (branches,), "head_map")
    elif len(head_branches(program)) > 1:
        x = writer.node("call_function", pruned_multiscale, (env[program.ops[0].name],), "pruned")
    else:
        x = env[program.block_outputs[blocks - 1]]
    if global_pool == "avg":  # forward_head's nodes
        x = writer.node("call_method", "mean", (x, (2, 3)), "pooled")
    if not isinstance(classifier, nn.Identity) and global_pool == "avg":
        x = writer.node("call_module", program.classifier, (x,), "head")
    elif not isinstance(classifier, nn.Identity):  # at each position of the map
        x = writer.node("call_method", "movedim", (x, 1, -1), "channels_last")
        x = writer.node("call_module", program.classifier, (x,), "head_channels_last")
        x = writer.node("call_method", "movedim", (x, -1, 1), "head")
    graph.output(x)
    _drop_unused(graph)
    graph.lint()
    return graph


def emit_fx(
    program: Program,
    class_name: str = "CliqueNet",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> CliqueNetGraphModule:
    """A GraphModule computing the Program, with freshly initialised parameters made on
    ``device`` in ``dtype``."""
    root = build_root(program, device, dtype)
    module = CliqueNetGraphModule(root, build_graph(program), class_name=class_name)
    module.program = program
    module.feature_info = program.feature_info()
    module.num_blocks = len(program.block_outputs)
    module.multiscale = len(head_branches(program)) > 1
    module.pruned = False
    module.global_pool = "avg"
    module.num_features = module.head_hidden_size = program.values[program.features].shape[0]
    module.in_chans = next(op.shape[0] for op in program.ops if op.kind == "input")
    return module
