"""Source of image-to-image networks: the Program of an :class:`~cliquegen.spec.network.ImageSpec`
as a standalone module, laid out like the classification models' (:mod:`.source`).

The module reads model-first: the header, the model class (its docstring lists the network op
by op; ``__init__`` declares every module, titled by network op and block; ``forward`` calls
one method per block and per run of ops around them), then the runtime functions it calls.
Each update of an explicit graph shows its equation (``# LH(1) = g(F(LL(1), LH(0)))``).
``generate_source``, ``build_files`` and ``build_source_model`` (:mod:`.build`) pick
:func:`render_image_source` for an image spec.
"""

from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import replace
from typing import Any

from ..compiler.ir import Group, ModuleDecl, Op, graph_blocks
from ..compiler.lower import Compiled
from ..compiler.naming import class_name
from ..compiler.summary import summarize
from ..spec.base import Provenance
from ..spec.graph import LeakyReLUSpec
from ..spec.network import ImageSpec
from . import _runtime
from .prose import describe_graph
from .pytext import INDENT, LINE_LENGTH, Seq, doc_paragraph, docstring, ident, pyrepr, strip_blank, wrap_text
from .source import GENERATED_MARKER, SourceWriter, template_environment

#: Runtime functions by what needs them: module kinds, op kinds (an update needs the whole
#: clique update of the classification models).
_BY_MODULE = {
    "weight": (_runtime.shared_weight, _runtime.init_conv_weight),
    "conv2d": (_runtime.conv2d, _runtime.init_conv_weight),
    "conv": (_runtime.padded_conv, _runtime.init_conv_weight),
    "bias": (_runtime.zero_bias,),
    "constant": (_runtime.constant,),
}
_BY_OP = {
    "update": (
        _runtime.Layer,  # the type of the modules the functions below take
        _runtime.call,
        _runtime.clique_update,
        _runtime.update_steps,
        _runtime.bn_relu_conv,
        _runtime.bn_relu,
        _runtime.checkpointed_update,
        _runtime.recomputed_update,
        _runtime.byte_mask_dropout,
        _runtime.can_fold,
        _runtime.folded_bn_relu,
    ),
    "dwt": (_runtime.haar_dwt,),
    "idwt": (_runtime.haar_idwt,),
    "upsample": (_runtime.bicubic_upsample,),
}


def _act_text(act: object) -> str:
    if act is None:
        return ""
    return (
        f"LeakyReLU({act.leaky_relu})"
        if isinstance(act, LeakyReLUSpec)
        else {"relu": "ReLU", "prelu": "PReLU"}[act]
    )


class ImageSourceWriter(SourceWriter):
    """The statements of an image network: titles from the network's ops and blocks."""

    device_args = False  # no timm model: its __init__ takes no device or dtype

    def __init__(self, compiled: Compiled):
        super().__init__(compiled)
        self.spec: ImageSpec = compiled.spec
        self.graph_blocks = [info.graph for info in graph_blocks(compiled.graph)]
        self.titles = self._titles()
        self.shared: dict[str, str] = {}  # block part -> the method of its graph (share_blocks)

    def _titles(self) -> dict[str, str]:
        """Each part's title: a network op as a person would say it."""
        titles: dict[str, str] = {}
        counts: dict[str, int] = {}
        shapes = {op.part: op.shape for op in self.program.ops}
        c = self.spec.input.channels
        block = 0
        for op in self.spec.network:
            counts[op.op] = counts.get(op.op, 0) + 1
            saved = f"; saved as {op.save}" if op.save else ""
            if op.op == "conv":
                act = f", {_act_text(op.act)}" if op.act else ""
                bias = "" if op.bias else " without bias"
                title = f"{op.name}: {op.kernel}x{op.kernel} conv{bias} {c} -> {op.out}{act}{saved}"
                titles[op.name] = title
                c = op.out
            elif op.op == "mean_shift":
                name = op.name or f"mean_shift{counts['mean_shift']}"
                sign = "+" if op.sign > 0 else "-"
                mean = ", ".join(f"{m:g}" for m in op.mean)
                titles[name] = f"Mean shift: x {sign} {op.scale:g} * ({mean}), constants{saved}"
            elif op.op in ("dwt", "idwt"):
                name = f"{op.op}{counts[op.op]}"
                c_out = shapes[name][0]
                what = "Haar DWT" if op.op == "dwt" else "Inverse Haar DWT"
                size = "half" if op.op == "dwt" else "double"
                titles[name] = f"{what}: {c} -> {c_out} channels (bands LL, HL, LH, HH), {size} size{saved}"
                c = c_out
            elif op.op == "add":
                skip = f"{op.skip}, enlarged by {op.resize}" if op.resize else op.skip
                titles[f"add{counts['add']}"] = f"Add the skip {skip}{saved}"
            elif op.op == "group":
                for _ in range(op.blocks):
                    graph = self.graph_blocks[block]
                    block += 1
                    titles[f"block{block}"] = f"Block {block}: {describe_graph(graph, op.graph)}"
                    c = shapes[f"block{block}"][0]
                if op.fuse is not None:
                    fuse = op.fuse
                    act = f", {_act_text(fuse.act)}" if fuse.act else ""
                    titles[fuse.name] = (
                        f"{fuse.name}: the {op.blocks} block outputs concatenated, "
                        f"{fuse.kernel}x{fuse.kernel} conv -> {fuse.out}{act}{saved}"
                    )
                    c = fuse.out
        return titles

    def title(self, part: str) -> str:
        return self.titles.get(part, part)

    def method_title(self, part: str) -> str:
        """A block that calls its graph's method names the method instead of repeating what
        the method's docstring says."""
        if part in self.shared:
            graph = self.titles[part].split(": ", 2)[1]  # "Block 3: graph subband-clique: ..."
            return f"Block {part[5:]}: {graph}, run by {self.shared[part]}"
        return self.title(part)

    def declare(self, decl: ModuleDecl) -> Seq:
        """A module; a ``constant`` is a buffer outside the state_dict."""
        if decl.kind != "constant":
            return super().declare(decl)
        if list(decl.args) != list(inspect.signature(_runtime.constant).parameters):
            raise AssertionError(f"{decl.path}: arguments {list(decl.args)} do not match constant")
        *parents, leaf = decl.path.split(".")
        owner = self.ref(".".join(parents)) if parents else "self"
        numbers = tuple(repr(float(v)) for v in decl.args["values"])
        values = Seq("(", numbers, ",)" if len(numbers) == 1 else ")")
        constant = Seq(f"{_runtime.constant.__name__}(", (values,), ")")
        return Seq(f"{owner}.register_buffer(", (pyrepr(leaf), constant, "persistent=False"), ")")

    # the ops of image networks, besides those of the classification models

    def op_leaky_relu(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"F.leaky_relu({x[0]}, {op.attrs['negative_slope']!r})")

    def op_conv(self, op: Op, x: list[str]) -> Seq:
        a = op.attrs
        weights = [self.ref(path) for path in a["weights"]]
        weight: Any = (
            weights[0] if len(weights) == 1 else Seq("torch.cat(", (Seq("[", tuple(weights), "]"), "1"), ")")
        )
        bias = self.ref(a["bias"]) if a["bias"] else "None"
        return Seq(f"{ident(op.name)} = F.conv2d(", (x[0], weight, bias, "1", pyrepr(a["padding"])), ")")

    def op_shift(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"{x[0]} + {self.ref(op.attrs['constant'])}")

    def op_dwt(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"haar_dwt({x[0]})")

    def op_idwt(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"haar_idwt({x[0]})")

    def op_upsample(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"bicubic_upsample({x[0]}, {op.attrs['scale']})")

    # blocks of one graph share a method

    def share_blocks(self, groups: list[Group]) -> list[list[str]]:
        """Give the blocks whose statements are the same but for their modules and value
        names one method per graph (``subband_clique_block(block, x)``), which each block's
        method calls with its own modules; return those methods."""
        names = [op.graph for op in self.spec.network if op.op == "group" for _ in range(op.blocks)]
        bodies: dict[tuple[tuple[str, ...], str], list[Group]] = {}  # (statements, result) -> blocks
        for group in groups:
            local = self._local_body(group)
            if local is not None:
                bodies.setdefault((tuple(local[0]), local[1]), []).append(group)
        taken = {path.split(".")[0] for path in self.program.modules} | {self.method_name(g) for g in groups}
        methods = []
        for (body, result), users in bodies.items():
            graph = names[int(users[0].name[5:]) - 1].replace("-", "_")
            name = ident(graph if graph.endswith("block") else f"{graph}_block")
            if len(users) < 2 or name in taken:
                continue
            taken.add(name)
            for group in users:
                self.shared[group.name] = name
            methods.append(self._shared_method(name, graph, users, list(body), result))
        return methods

    def _local_body(self, group: Group) -> tuple[list[str], str] | None:
        """A block's statements as a method that gets its modules as ``block`` and its input
        as ``x`` writes them (its values without their ``b3_`` prefix), and the name of the
        value it returns; None for what is not one block so written."""
        block = re.fullmatch(r"block(\d+)", group.name)
        if block is None or group.name in self.rolled or len(group.inputs) != 1 or len(group.outputs) != 1:
            return None
        prefix = f"b{block[1]}_"

        def local(name: str) -> str | None:
            if name == group.inputs[0]:
                return "x"
            return name[len(prefix) :] if name.startswith(prefix) else None

        names = [local(op.name) for op in group.ops]
        if any(n is None or n == "x" or n in self.RESERVED or keyword.iskeyword(n) for n in names):
            return None
        if len(set(names)) != len(names) or any(local(i) is None for op in group.ops for i in op.inputs):
            return None
        ops = [replace(op, name=local(op.name), inputs=tuple(map(local, op.inputs))) for op in group.ops]
        values = self.values
        self.values = {**values, **{op.name: op for op in ops}}
        try:
            lines = strip_blank(self.body(ops, first_title=False))
        finally:
            self.values = values
        binding = f"block = {self.ref(group.name)}"  # the method's parameter instead
        if not lines or lines[0] != binding or any(binding in line for line in lines[1:]):
            return None
        return lines[1:], local(group.outputs[0])

    def _shared_method(
        self, name: str, graph: str, users: list[Group], body: list[str], result: str
    ) -> list[str]:
        """The method ``name`` that runs a block of ``graph`` for each of ``users``."""
        numbers = [int(group.name[5:]) for group in users]
        if len(numbers) == 2:
            which = f"blocks {numbers[0]} and {numbers[1]}"
        elif numbers == list(range(numbers[0], numbers[-1] + 1)):
            which = f"blocks {numbers[0]} to {numbers[-1]}"
        else:
            which = "blocks " + ", ".join(map(str, numbers))
        what = self.titles[users[0].name].split(": ", 1)[1]  # "graph subband-clique: ll, lh, ..."
        summary = f"{what[0].upper()}{what[1:]}. Runs {which}, each with its own modules as ``block``."
        flow = f"x {self.shapes(users[0].inputs)} -> {result} {self.shapes(users[0].outputs)}."
        opening = INDENT * 2 + '"""'  # the summary's first line follows the quotes
        doc = [*doc_paragraph(summary, opening), "", *doc_paragraph(flow, INDENT * 2)]
        lines = [
            f"def {name}(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:",
            f'{INDENT}"""{docstring(doc[0])}',
            *(INDENT + docstring(line) if line else "" for line in doc[1:]),
            f'{INDENT}"""',
        ]
        lines += [INDENT + line if line else "" for line in body]
        lines.append(f"{INDENT}return {result}")
        return lines

    def method_body(self, group: Group) -> list[str]:
        """A block of a shared graph calls the graph's method with its modules."""
        if group.name not in self.shared:
            return super().method_body(group)
        (x,), (out,) = group.inputs, group.outputs
        call = f"{ident(out)} = self.{self.shared[group.name]}({self.ref(group.name)}, {ident(x)})"
        comment = f"  # {self.shapes([out])}"
        lines = [call + comment if len(call + comment) <= LINE_LENGTH - 2 * len(INDENT) else call]
        if out in self.group_maps(group):
            index = self.program.block_outputs.index(out) + 1
            lines += [
                f"if maps is not None:  # the map block {index} hands on",
                f"{INDENT}maps.append({ident(out)})",
            ]
        return lines

    def part_header(self, part: str, ops: list[Op], title: bool = True) -> list[str]:
        """The part's title; in a block, ``block`` bound to its modules."""
        lines = super().part_header(part, ops, title)
        if self.alias is None and part.startswith("block") and part[5:].isdigit():
            used = {path for op in ops if op.part == part for path in self.program.module_inputs(op)}
            if used and all(path.startswith(part + ".") for path in used):
                lines.append(f"block = {self.ref(part)}")
                self.alias = part
        return lines

    def runtime(self) -> list[tuple[str, list[str]]]:
        """The runtime functions the module calls, in sections."""
        kinds = {decl.kind for decl in self.program.modules.values()}
        ops = {op.kind for op in self.program.ops}
        wanted = [f for kind, functions in _BY_MODULE.items() if kind in kinds for f in functions]
        constructors = list(dict.fromkeys(wanted))
        sections = []
        if constructors:
            sections.append(("Constructors: how __init__ builds and initialises each module", constructors))
        if "update" in ops:
            sections.append(("The clique update of pre-activation units", list(_BY_OP["update"])))
        transforms = [f for kind in ("dwt", "idwt") if kind in ops for f in _BY_OP[kind]]
        if transforms:
            sections.append(("The Haar wavelet transforms", transforms))
        if "upsample" in ops:
            sections.append(("The bicubic enlargement", list(_BY_OP["upsample"])))
        return [
            (title, [inspect.getsource(f).rstrip("\n") for f in functions]) for title, functions in sections
        ]


def architecture(compiled: Compiled, writer: ImageSourceWriter, params: int, flops: int) -> list[str]:
    """Docstring lines: input and output, then each network op's title."""
    spec = compiled.spec
    c, h, w = spec.input.channels, spec.input.height, spec.input.width
    out = compiled.program.values[compiled.program.output].shape
    lines = [
        f"Input (B, {c}, H, W), output (B, {out[0]}, {spec.output.scale}H, {spec.output.scale}W); built for "
        f"{h}x{w}: {params:,} parameters, {flops / 1e9:.3f} GFLOPs per image.",
    ]
    lines += [title for part, title in writer.titles.items() if not _repeats(part, writer)]
    wrapped = []
    for line in lines:
        first, *rest = wrap_text(line, LINE_LENGTH - len(INDENT), ", ")
        wrapped += [first, *(INDENT + more for more in rest)]
    return wrapped


def _repeats(part: str, writer: ImageSourceWriter) -> bool:
    """A block whose title says what the block before it says (but its number)."""
    if not (part.startswith("block") and part[5:].isdigit()) or part == "block1":
        return False
    before = writer.titles.get(f"block{int(part[5:]) - 1}", "")
    return before.split(": ", 1)[-1] == writer.titles[part].split(": ", 1)[-1]


def render_image_source(compiled: Compiled, origin: Provenance, version: str) -> str:
    """The module text of a compiled image spec."""
    spec, program = compiled.spec, compiled.program
    writer = ImageSourceWriter(compiled)
    summary = summarize(compiled)
    input_shape = next(op.shape for op in program.ops if op.kind == "input")
    header = [
        f"{spec.name}: an image-to-image network of explicit graph blocks in plain PyTorch.",
        "",
        f"{GENERATED_MARKER} {version}; do not edit: change the spec and build again.",
        *doc_paragraph(f"Spec: {origin.path}", ""),
        f"sha256 of its {origin.hashed}: {origin.sha256}",
        "Needs only torch; ``Model()`` builds the network with fresh weights.",
        "The model class comes first; the runtime functions it calls follow it.",
    ]
    doc = [f"The image network ``{spec.name}``.", ""]
    if spec.description:
        doc += doc_paragraph(spec.description, INDENT) + [""]
    doc += architecture(compiled, writer, summary.params, summary.flops)
    groups = program.groups()
    forward_lines: list[str] = []
    intermediates_lines: list[str] = []
    for group in groups:
        forward_lines += writer.call(group, maps=False)
        intermediates_lines += writer.call(group)
    notes = _stage_notes(writer)
    graph_methods = writer.share_blocks(groups)
    methods = [writer.method(group) for group in groups] + graph_methods
    runtime = writer.runtime()
    code = "\n".join([line for method in methods for line in method] + [f for _, fs in runtime for f in fs])
    context = {
        "header": header,
        "constants": {
            "SPEC_NAME": spec.name,
            "SPEC_DESCRIPTION": spec.description,
            "SPEC_PATH": origin.path,
            "SPEC_SHA256": origin.sha256,
            "GENERATOR": f"cliquegen {version}",
            "INPUT_SHAPE": input_shape,
            "SCALE": spec.output.scale,
        },
        "width": LINE_LENGTH,
        "checkpoint": "update" in {op.kind for op in program.ops},
        "runtime": runtime,
        "functional": re.search(r"\bF\.", code) is not None,
        "class_name": class_name(spec),
        "doc": doc + notes,
        "init_lines": writer.init_lines(),
        "input": "x",
        "methods": methods,
        "forward_lines": forward_lines,
        "intermediates_lines": intermediates_lines,
        "output": program.output,
        "memory_efficient": spec.memory_efficient,
        "output_shape": ", ".join(map(str, program.values[program.output].shape)),
        "input_shape": ", ".join(map(str, input_shape)),
    }
    return template_environment().get_template("image_model.py.jinja2").render(**context)


def _stage_notes(writer: ImageSourceWriter) -> list[str]:
    """How to read the equations, when a block shows some."""
    if not writer.graph_blocks:
        return []
    text = (
        "In the equations X(k) is node X after stage k, X(0) its slice of the block input; "
        "F is the update's convolution over its sources concatenated in the order written, "
        "g the unit's activation."
    )
    return ["", *doc_paragraph(text, INDENT)]
