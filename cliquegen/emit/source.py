"""Source emitter: the Program as a standalone Python module a person can read.

The module imports only torch and the standard library.  ``__init__`` declares the
Program's modules in declaration order with the constructors of :mod:`._runtime` (copied
into the module), so a torch seed gives the FX model's initial weights and the
``state_dict`` keys are the FX model's.  The forward pass is the Program's ops, one
statement each, named as in the Program (``b1_x3_s2``), every update under its stage
equation.

:class:`SourceWriter` turns ops and module declarations into statements (one method per
kind, an explicit error for an unknown one); ``templates/model.py.jinja2`` lays them out.
The statements come out already in ``ruff format`` style (line length
:data:`LINE_LENGTH`), so generated files pass ``ruff format --check`` unchanged.
User text (name, description, spec path) reaches the file only through
:func:`pyrepr` (a string literal) or :func:`docstring` (escaped docstring text).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import linecache
import os
import types
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from torch import nn

from ..ir import ModuleDecl, Op, Program, is_identifier, sanitize_identifier
from ..lower import Compiled, compile_spec
from ..spec import BlockConfig, Spec
from ..summary import summarize
from . import _runtime

LINE_LENGTH = 110
INDENT = "    "
BODY_WIDTH = LINE_LENGTH - 2 * len(INDENT)  # statements sit in method bodies
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

#: What the generated module takes from _runtime, in the order it lists them.
RUNTIME_FUNCTIONS = (_runtime.shared_weight, _runtime.conv2d, _runtime.linear, _runtime.clique_update)


def text_width(text: str) -> int:
    """Columns ``text`` takes in an editor (and for ruff's line length): wide East Asian
    characters and emoji count 2, combining marks 0."""
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


# --- user text -> Python text ---------------------------------------------------------------


def _escape(text: str, quote: str, quote_at: Any) -> str:
    """Backslash-escape ``\\``, every non-printable character, and ``quote`` where
    ``quote_at(index)`` says so.  The result holds no raw whitespace but spaces."""
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char == quote and quote_at(index):
            out.append("\\" + quote)
        elif not char.isprintable():
            out.append(repr(char)[1:-1])  # \n, \t, \x0b, \u2028, ...
        else:
            out.append(char)
    return "".join(out)


def _string_literal(text: str) -> str:
    """A string literal for ``text`` with the quotes ``ruff format`` prefers."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + _escape(text, quote, lambda index: True) + quote


def pyrepr(value: Any, width: int | None = None) -> str:
    """A Python literal for ``value``; a string longer than ``width`` becomes a parenthesized
    concatenation of pieces that each fit (split after spaces where possible)."""
    if not isinstance(value, str):
        if isinstance(value, (bool, int, float, type(None))) or (
            isinstance(value, tuple) and all(isinstance(v, int) for v in value)
        ):
            return repr(value)
        raise TypeError(f"pyrepr: no literal for {type(value).__name__}")
    literal = _string_literal(value)
    if width is None or text_width(literal) <= width:
        return literal
    if len(INDENT) + text_width(literal) <= LINE_LENGTH:
        return f"(\n{INDENT}{literal}\n)"
    room = LINE_LENGTH - len(INDENT)  # for each piece, quotes included
    pieces: list[str] = []
    piece = ""
    words = value.split(" ")
    for index, word in enumerate(words):
        word += " " if index + 1 < len(words) else ""  # spaces stay at the end of a piece
        if text_width(_string_literal(piece + word)) <= room:
            piece += word
            continue
        if piece:
            pieces.append(piece)
            piece = ""
        for char in word:  # a word longer than a line is cut
            if piece and text_width(_string_literal(piece + char)) > room:
                pieces.append(piece)
                piece = ""
            piece += char
    pieces.append(piece)
    body = "".join(f"\n{INDENT}{_string_literal(p)}" for p in pieces if p)
    return f"({body}\n)"


def docstring(text: str) -> str:
    """``text`` as the inside of a ``\"\"\"`` docstring: backslashes, non-printable characters
    (newlines included) and any ``"`` that could end or touch the closing quotes are escaped."""
    return _escape(text, '"', lambda index: index + 1 == len(text) or text[index + 1] == '"')


def doc_paragraph(text: str, indent: str, width: int = LINE_LENGTH) -> list[str]:
    """``text`` cut at spaces into lines that fit a docstring at ``indent`` once escaped
    (escape each line with :func:`docstring`); a word longer than a line stays whole."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if not word:
            continue
        longer = f"{line} {word}" if line else word
        if line and len(indent) + text_width(docstring(longer)) > width:
            lines.append(line)
            line = word
        else:
            line = longer
    return [*lines, line] if line else lines


def ident(name: str) -> str:
    """An identifier for the generated code; Program names are already identifiers, so a
    change here is a compiler bug, not something to paper over."""
    safe = sanitize_identifier(name)
    if safe != name or not is_identifier(safe):
        raise AssertionError(f"{name!r} is not a safe identifier")
    return safe


@functools.cache
def _environment() -> jinja2.Environment:
    """The one jinja2 environment, with the filters templates use."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Python, not HTML: user text goes through pyrepr and docstring
    )
    env.filters["pyrepr"] = pyrepr
    env.filters["docstring"] = docstring
    env.filters["ident"] = ident
    return env


# --- statements in ruff format style --------------------------------------------------------


@dataclass(frozen=True)
class Seq:
    """A bracketed argument, ``open`` including any ``keyword=`` prefix: split when too long."""

    open: str
    items: tuple[Any, ...]
    close: str

    def flat(self) -> str:
        return f"{self.open}{', '.join(_flat(item) for item in self.items)}{self.close}"


def _flat(item: Any) -> str:
    return item.flat() if isinstance(item, Seq) else item


def format_call(indent: int, seq: Seq, width: int = LINE_LENGTH) -> list[str]:
    """Lines of ``seq`` (``x = f(`` ... ``)``) as ruff format lays them out at ``indent``:
    on one line; else the arguments on one line of their own; else one per line with a
    trailing comma, splitting any that still does not fit."""
    pad = " " * indent
    flat = seq.flat()
    if len(pad) + len(flat) <= width:
        return [pad + flat]
    inner_pad = pad + INDENT
    body = ", ".join(_flat(item) for item in seq.items)
    if len(inner_pad) + len(body) <= width:
        return [pad + seq.open, inner_pad + body, pad + seq.close]
    lines = [pad + seq.open]
    for item in seq.items:
        line = _flat(item) + ","
        if len(inner_pad) + len(line) <= width or not isinstance(item, Seq):
            lines.append(inner_pad + line)
        else:
            lines += format_call(indent + len(INDENT), Seq(item.open, item.items, item.close + ","), width)
    lines.append(pad + seq.close)
    return lines


def wrap_text(text: str, width: int, separator: str) -> list[str]:
    """Program text (never user text) cut after ``separator`` into lines of at most ``width``
    (the first) and ``width - 2`` (the others, which the caller indents)."""
    lines, line = [], ""
    for term in text.split(separator):
        room = width - 2 * bool(lines) - len(separator.rstrip())  # the separator ending a line
        if line and len(line) + len(separator) + len(term) > room:
            lines.append(line + separator.rstrip())
            line = term
        else:
            line = f"{line}{separator}{term}" if line else term
    return [*lines, line]


def wrap_comment(text: str, width: int = BODY_WIDTH, separator: str = " + ") -> list[str]:
    """A comment of program text, continued on ``#   `` lines when too long."""
    first, *rest = wrap_text(text, width - 2, separator)
    return [f"# {first}", *(f"#   {line}" for line in rest)]


# --- Program -> statements -------------------------------------------------------------------


class SourceWriter:
    """Turns a Program into the statements of ``__init__`` and the forward methods.

    ``op_<kind>`` writes one kind of op (override it to change how); ``declare`` writes any
    module through its constructor in ``_runtime.CONSTRUCTORS``.
    """

    #: Names the generated module binds itself; no Program value may take one.
    RESERVED = frozenset(
        {"self", "block", "update", "partial", "torch", "F", "nn", "pre_logits", "Model"}
        | {function.__name__ for function in RUNTIME_FUNCTIONS}
    )

    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.program: Program = compiled.program
        clashes = sorted(self.RESERVED & {op.name for op in self.program.ops})
        if clashes:
            raise AssertionError(f"Program values {clashes} clash with names of the generated module")
        self.blocks: list[BlockConfig] = [info["config"] for info in compiled.graph.graph["blocks"]]
        self.values = self.program.values
        self.alias: str | None = None  # module path prefix bound to the local `block`
        self.bound: dict[str, str] = {}  # clique_update options bound in the local `update`

    # declarations

    def init_lines(self) -> list[str]:
        """``__init__`` body: containers on first use, then each module, in declaration order."""
        lines: list[str] = []
        made: set[str] = set()
        section = None
        for path, decl in self.program.modules.items():
            *parents, _ = path.split(".")
            top = path.split(".")[0]
            if top != section:
                section = top
                if lines:
                    lines.append("")
                lines += wrap_comment(self.part_title(top), separator=", ")
            for depth in range(1, len(parents) + 1):
                container = ".".join(parents[:depth])
                if container not in made:
                    made.add(container)
                    lines.append(f"{self.ref(container)} = nn.Module()")
            lines += format_call(0, self.declare(decl), BODY_WIDTH)
        return lines

    def declare(self, decl: ModuleDecl) -> Seq:
        constructor = _runtime.CONSTRUCTORS.get(decl.kind)
        if constructor is None:
            raise ValueError(f"source emitter: unknown module kind {decl.kind!r} ({decl.path})")
        name = constructor.__name__ if constructor in RUNTIME_FUNCTIONS else f"nn.{constructor.__name__}"
        params = list(inspect.signature(constructor).parameters)
        if list(decl.args) != params[: len(decl.args)]:
            raise AssertionError(f"{decl.path}: arguments {list(decl.args)} do not match {name}{params}")
        args = [
            pyrepr(value) if position < 2 else f"{key}={pyrepr(value)}"
            for position, (key, value) in enumerate(decl.args.items())
        ]
        return Seq(f"{self.ref(decl.path)} = {name}(", tuple(args), ")")

    def ref(self, path: str) -> str:
        """How forward code names a module: ``block.bn1_s1`` inside a block, else ``self.x``."""
        parts = [ident(part) for part in path.split(".")]
        if self.alias and path.startswith(self.alias + "."):
            return ".".join(["block", *parts[self.alias.count(".") + 1 :]])
        return ".".join(["self", *parts])

    # forward

    def needed(self, targets: list[str]) -> set[str]:
        """Values the targets depend on, themselves included."""
        seen: set[str] = set()
        stack = list(targets)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack += self.values[name].inputs
        return seen

    def features_ops(self) -> list[Op]:
        keep = self.needed([self.program.features])
        return [op for op in self.program.ops if op.name in keep]

    def head_ops(self) -> list[Op]:
        before = self.needed([self.program.features])
        ops = [op for op in self.program.ops if op.name in self.needed([self.program.output]) - before]
        for op in ops:
            leaked = [name for name in op.inputs if name in before and name != self.program.features]
            if leaked:
                raise AssertionError(f"{op.name} reads {leaked} besides the features")
        return ops

    def body(self, ops: list[Op]) -> list[str]:
        """Statements of ``ops`` with a comment where a part of the network begins."""
        lines: list[str] = []
        part = None
        self.alias, self.bound = None, {}
        for op in ops:
            if op.kind == "input":
                continue
            if op.part != part:
                part = op.part
                lines += self.part_header(part, ops)
            lines += self.emit(op)
        self.alias, self.bound = None, {}
        return lines

    def part_header(self, part: str, ops: list[Op]) -> list[str]:
        """The part's title; in a block, ``block`` and ``update`` (clique_update with the
        options all its updates share) bound for the statements below."""
        lines = ["", *wrap_comment(self.part_title(part), separator=", ")] if part else []
        updates = [op for op in ops if op.part == part and op.kind == "update"]
        self.alias, self.bound = None, {}
        if updates:
            prefixes = {path.rsplit(".", 1)[0] for op in updates for path in self.program.module_inputs(op)}
            if len(prefixes) == 1:
                (prefix,) = prefixes
                lines.append(f"block = {self.ref(prefix)}")
                self.alias = prefix
            options = [self.update_options(op) for op in updates]
            shared = {
                key: value for key, value in options[0].items() if all(o.get(key) == value for o in options)
            }
            if shared:
                keywords = ", ".join(f"{key}={value}" for key, value in shared.items())
                lines.append(f"update = partial(clique_update, {keywords})")
                self.bound = shared
        return lines

    def emit(self, op: Op) -> list[str]:
        method = getattr(self, f"op_{op.kind}", None)
        if method is None:
            raise ValueError(f"source emitter: unknown op kind {op.kind!r} ({op.name})")
        statement = method(op, [ident(name) for name in op.inputs])
        lines = format_call(0, statement, BODY_WIDTH) if isinstance(statement, Seq) else [statement]
        if op.kind == "update":
            return wrap_comment(op.comment or op.name) + lines
        if op.shape:
            comment = f"  # (B, {', '.join(map(str, op.shape))})"
            if len(lines) == 1 and len(lines[0] + comment) <= BODY_WIDTH:
                lines[0] += comment
        return lines

    def assign(self, op: Op, expression: str) -> str:
        return f"{ident(op.name)} = {expression}"

    def op_call(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"{self.ref(op.attrs['module'])}({x[0]})")

    def op_relu(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"F.relu({x[0]})")

    def op_sigmoid(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"torch.sigmoid({x[0]})")

    def op_cat(self, op: Op, x: list[str]) -> Seq:
        return Seq(f"{ident(op.name)} = torch.cat(", (Seq("[", tuple(x), "]"), "1"), ")")

    def op_max_pool(self, op: Op, x: list[str]) -> str:
        a = op.attrs
        return self.assign(op, f"F.max_pool2d({x[0]}, {a['kernel_size']}, {a['stride']}, {a['padding']})")

    def op_avg_pool(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"F.avg_pool2d({x[0]}, {op.attrs['kernel_size']})")

    def op_global_pool(self, op: Op, x: list[str]) -> str:
        return self.assign(op, f"{x[0]}.mean((2, 3))")

    def op_scale(self, op: Op, x: list[str]) -> str:
        channels = self.values[op.inputs[1]].shape[0]
        return self.assign(op, f"{x[0]} * {x[1]}.view(-1, {channels}, 1, 1)")

    def update_options(self, op: Op) -> dict[str, str]:
        """Keyword arguments of clique_update other than the bottleneck, as source text."""
        a = op.attrs
        options = {"padding": pyrepr(a["padding"])}
        if a["dropout"]:
            options["dropout"] = self.ref(a["dropout"])
        return options

    def op_update(self, op: Op, x: list[str]) -> Seq:
        a = op.attrs
        args: list[Any] = [
            Seq("[", tuple(x), "]"),
            Seq("[", tuple(self.ref(path) for path in a["weights"]), "]"),
            self.ref(a["bn"]),
        ]
        args += [f"{key}={value}" for key, value in self.update_options(op).items() if key not in self.bound]
        if a["bottleneck_conv"]:
            args.append(
                Seq("bottleneck=(", (self.ref(a["bottleneck_bn"]), self.ref(a["bottleneck_conv"])), ")")
            )
        function = "update" if self.bound else "clique_update"
        return Seq(f"{ident(op.name)} = {function}(", tuple(args), ")")

    # prose

    def part_title(self, part: str) -> str:
        if part == "stem":
            return "Stem"
        if part.startswith("block") and part[5:].isdigit():
            block = self.blocks[int(part[5:]) - 1]
            return f"Block {part[5:]}: {describe_block(block)}"
        if part.startswith("transition") and part[10:].isdigit():
            return f"Transition {part[10:]}"
        return part.capitalize()


def describe_block(block: BlockConfig) -> str:
    """``4 layers of k=36, 2 stages, 3x3 W_ij, dropout 0.2`` and the other options set."""
    phrases = [f"{block.layers} layers of k={block.channels}", f"{block.stages} stages"]
    if block.partial is not None:
        phrases.append(f"the last stage runs its first {block.partial} updates only")
    if block.order != tuple(range(1, block.layers + 1)):
        phrases.append(f"order {' '.join(map(str, block.order))}")
    phrases.append(f"{block.conv_kernel}x{block.conv_kernel} W_ij")
    if block.bottleneck:
        phrases.append(f"bottleneck {block.kernel}x{block.kernel} conv per layer")
    if block.dropout:
        phrases.append(f"dropout {block.dropout}")
    return ", ".join(phrases)


def roman(stage: int) -> str:
    """Stage numbers as the paper writes them (I, II, ...), plain digits past X."""
    return (
        ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"][stage - 1]
        if stage <= 10
        else str(stage)
    )


# --- the module ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecOrigin:
    """Where a spec came from, for the header: the path as given (or ``<string>``) and a
    sha256 of its bytes (or, for a Spec object, of its canonical JSON)."""

    path: str
    sha256: str
    hashed: str  # what the sha256 is of

    @classmethod
    def of_bytes(cls, path: str, data: bytes, hashed: str = "file") -> SpecOrigin:
        return cls(path, hashlib.sha256(data).hexdigest(), hashed)

    @classmethod
    def of_spec(cls, spec: Spec, path: str = "<string>") -> SpecOrigin:
        data = spec.model_dump_json().encode()
        return cls(path, hashlib.sha256(data).hexdigest(), "canonical JSON")


def load_with_origin(source: str | os.PathLike[str], *, path: str | None = None) -> tuple[Spec, SpecOrigin]:
    """``load_spec`` that also says where the spec came from (for the generated header)."""
    from ..loader import load_spec

    spec = load_spec(source, path=path)
    if isinstance(source, os.PathLike) or ("\n" not in source and source.lower().endswith((".yaml", ".yml"))):
        return spec, SpecOrigin.of_bytes(
            os.fspath(source) if path is None else path, Path(source).read_bytes()
        )
    return spec, SpecOrigin.of_bytes("<string>" if path is None else path, source.encode(), "text")


def render_source(compiled: Compiled, origin: SpecOrigin, class_name: str, version: str) -> str:
    """The module text of a compiled spec."""
    spec, program = compiled.spec, compiled.program
    writer = SourceWriter(compiled)
    summary = summarize(compiled)
    input_shape = program.values[next(op.name for op in program.ops if op.kind == "input")].shape
    num_features = program.values[program.features].shape[0]
    num_classes = program.values[program.output].shape[0]

    header = [
        f"{spec.name}: a clique network (CliqueNet, Yang et al., CVPR 2018) in plain PyTorch.",
        "",
        f"Generated by cliquegen {version}; do not edit: change the spec and build again.",
        *doc_paragraph(f"Spec: {origin.path}", ""),
        f"sha256 of its {origin.hashed}: {origin.sha256}",
        "Needs only torch; ``Model()`` builds the network with fresh weights.",
    ]
    doc = [f"The clique network ``{spec.name}``.", ""]
    if spec.description:
        doc += doc_paragraph(spec.description, INDENT) + [""]
    doc += architecture(compiled, summary.params, summary.flops, num_features)

    features = writer.features_ops()
    context = {
        "header": header,
        "constants": {
            "SPEC_NAME": spec.name,
            "SPEC_DESCRIPTION": spec.description,
            "SPEC_PATH": origin.path,
            "SPEC_SHA256": origin.sha256,
            "GENERATOR": f"cliquegen {version}",
            "INPUT_SHAPE": input_shape,
            "NUM_CLASSES": num_classes,
        },
        "width": LINE_LENGTH,
        "runtime": [inspect.getsource(function).rstrip("\n") for function in RUNTIME_FUNCTIONS],
        "class_name": class_name,
        "doc": doc,
        "init_lines": writer.init_lines(),
        "input": features[0].name if features and features[0].kind == "input" else "x",
        "input_shape": ", ".join(map(str, input_shape)),
        "features": program.features,
        "features_lines": _strip_blank(writer.body(features)),
        "head_lines": _strip_blank(writer.body(writer.head_ops())),
        "output": program.output,
        "classifier": writer.ref(program.classifier),
        "num_features": num_features,
        "num_classes": num_classes,
    }
    return _environment().get_template("model.py.jinja2").render(**context)


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0]:
        lines = lines[1:]
    return lines


def architecture(compiled: Compiled, params: int, flops: int, num_features: int) -> list[str]:
    """Docstring lines stating the network: input, stem, blocks, transitions, head."""
    spec = compiled.spec
    blocks: list[dict] = compiled.graph.graph["blocks"]
    c, h, w = spec.input.channels, spec.input.height, spec.input.width
    lines = [
        f"Input (B, {c}, {h}, {w}), {spec.num_classes} classes; {params:,} parameters,"
        f" {flops / 1e9:.3f} GFLOPs per image.",
    ]
    if spec.stem.kind == "cifar":
        lines.append(f"Stem: 3x3 conv {c} -> {spec.stem.channels}.")
    else:
        lines.append(f"Stem: 7x7/2 conv {c} -> {spec.stem.channels}, BN, ReLU, 3x3/2 max pool.")
    for b, info in enumerate(blocks):
        block: BlockConfig = info["config"]
        feature = " + ".join("X0" if ref == "x0" else f"stage {roman(ref)}" for ref in block.feature)
        lines.append(f"Block {b + 1}: {describe_block(block)};")
        carried = f", stage {roman(block.transit)} to the next block" if b + 1 < len(blocks) else ""
        lines.append(f"{INDENT}X0 of {info['input_channels']} channels; feature {feature}{carried}.")
    if len(blocks) > 1:
        attention = " squeeze-and-excitation attention," if spec.transition.attention else ""
        lines.append(f"Transitions: BN, ReLU, 1x1 conv,{attention} 2x2 average pool.")
    compression = " compressed to half (BN, ReLU, 1x1 conv)," if spec.head.compression else ""
    lines.append(f"Head: each block feature{compression} BN, ReLU, global average pool;")
    lines.append(f"{INDENT}concatenated ({num_features} features) -> linear.")
    wrapped = []
    for line in lines:  # continuation lines are indented once more
        indent = line[: len(line) - len(line.lstrip(" "))]
        first, *rest = wrap_text(line.lstrip(" "), LINE_LENGTH - len(INDENT + indent), ", ")
        wrapped += [indent + first, *(INDENT + indent + more for more in rest)]
    return wrapped


def generate_source(spec: Spec | str | os.PathLike[str], *, path: str | None = None) -> str:
    """The spec's model as standalone Python source (a module that imports only torch).

    ``spec`` is a :class:`Spec`, or a spec file or YAML text as for ``load_spec``.  The
    header names the file as given (``path`` overrides it; ``<string>`` for text) and its
    sha256; a Spec object does not remember its text, so there the sha256 is of its
    canonical JSON.
    """
    from .. import __version__
    from .._builder import class_name

    if isinstance(spec, Spec):
        origin = SpecOrigin.of_spec(spec, "<string>" if path is None else path)
    else:
        spec, origin = load_with_origin(spec, path=path)
    return render_source(compile_spec(spec), origin, class_name(spec), __version__)


def exec_source(text: str, module_name: str) -> types.ModuleType:
    """Run generated text as a fresh module (not put in ``sys.modules``); tracebacks show it."""
    filename = f"<cliquegen generated {module_name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = types.ModuleType(module_name)
    exec(compile(text, filename, "exec"), module.__dict__)  # noqa: S102 (text we generated)
    return module


def build_source_model(spec: Spec) -> nn.Module:
    """A freshly initialised instance of the generated module's ``Model``."""
    return exec_source(generate_source(spec), spec.module_name).Model()


def build_files(
    sources: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> list[tuple[Path, Compiled]]:
    """Write ``out_dir/<module>.py`` for every spec file; return the paths and compiled specs.

    Every spec is loaded and generated before anything is written, so one bad spec writes
    nothing.  Each file is written to a temporary file in ``out_dir`` and renamed over the
    target (os.replace), so a reader never sees half a module.
    """
    from .. import __version__
    from .._builder import class_name
    from ..errors import SpecError, UsageError
    from ..render import write_atomically  # temporary file in the folder + os.replace

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a folder; -o names the folder the modules go to")
    diagnostics = []
    jobs: dict[str, tuple[str, Compiled]] = {}  # module file name -> (text, compiled)
    for source in sources:
        given = os.fspath(source)
        try:
            spec, origin = load_with_origin(Path(given), path=given)
        except SpecError as error:
            diagnostics += error.diagnostics
            continue
        file_name = f"{ident(sanitize_identifier(spec.module_name))}.py"
        if file_name in jobs:
            raise UsageError(f"{given}: another spec also builds {file_name} (spec names must differ)")
        compiled = compile_spec(spec)
        jobs[file_name] = (render_source(compiled, origin, class_name(spec), __version__), compiled)
    if diagnostics:
        raise SpecError(diagnostics)

    out.mkdir(parents=True, exist_ok=True)
    folder = out.resolve()
    written = []
    for file_name, (text, compiled) in jobs.items():
        if (folder / file_name).parent != folder:
            raise AssertionError(f"{file_name!r} would leave the output folder")
        write_atomically(folder / file_name, text)
        written.append((out / file_name, compiled))
    return written
