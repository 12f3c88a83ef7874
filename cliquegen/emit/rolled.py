"""Blocks too large to write out update by update, emitted as one ``CliqueBlock``.

A block of :data:`ROLL_FROM` layers or more becomes ``self.blockN = CliqueBlock(...)`` in
``__init__``, whose schedule table has one row ``(j, k)`` per update in execution order, each
under its stage equation (runs of like terms shortened to ``W1,24*X1(1) + ... + W23,24*X23(1)``);
its forward method runs the block in one call, ``after = self.blockN(bN_x0,
self.memory_efficient)``, and the transition and head read ``after[k]``, the newest value of
every layer after stage k.  ``CliqueBlock`` (:mod:`._runtime`) makes the modules that the
written-out block declares, with the same names in the same order, so the ``state_dict`` keys
and the seeded initial weights do not change; :meth:`RolledBlock.check` refuses a Program whose
block it would not reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..compiler.ir import BlockInfo, Op, Program, graph_blocks, node_label, weight_label
from ..compiler.lower import Compiled
from ..compiler.naming import roman
from .pytext import INDENT, LINE_LENGTH, pyrepr, wrap_text

#: Blocks of this many layers or more are emitted as a CliqueBlock run from a schedule table.  The
#: drawings switch to matrices above 12 layers; a 12-layer block written out already spends up to
#: 30 lines on one update (an input and a W_ij per line), 300 on the block.
ROLL_FROM = 12

#: The CliqueBlock arguments that the block's declarations state (a BatchNorm's, a weight's).
DECLARED_OPTIONS = {"batch_norm": ("eps", "momentum"), "weight": ("init",)}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class RolledBlock:
    """One block emitted as a CliqueBlock: its updates, in execution order, and its values."""

    part: str  # block3: the block's part, and the attribute that holds it
    info: BlockInfo
    updates: tuple[Op, ...]
    x0: str  # the value of X0
    #: ``after[k]``: the newest value of each layer after stage k; ``after[0]`` is X0 alone.
    after: tuple[tuple[str, ...], ...]

    @cached_property
    def values(self) -> set[str]:
        return {op.name for op in self.updates}

    def rows(self) -> list[tuple[int, int]]:
        return [op.attrs["node"][1:] for op in self.updates]

    # __init__

    def options(self, program: Program) -> dict[str, Any]:
        """CliqueBlock's arguments: the block's settings, and the norm and init settings its
        declarations carry (those that differ from the defaults)."""
        block = self.info.config
        options: dict[str, Any] = {"in_channels": self.info.input_channels, "channels": block.channels}
        options["kernel"] = block.conv_kernel
        if block.conv_channels != block.channels:
            options["width"] = block.conv_channels
        if block.bottleneck:
            options["bottleneck"] = block.kernel
        if not block.share_weights:
            options["share_weights"] = False
        if block.dropout:
            options["dropout"] = block.dropout
        for path, decl in program.modules.items():
            if path.startswith(f"{self.part}."):
                for key in DECLARED_OPTIONS.get(decl.kind, ()):
                    if key in decl.args:
                        options.setdefault(key, decl.args[key])
        return options

    def constructor(self, program: Program, target: str, dd: bool = False) -> list[str]:
        """``target = CliqueBlock(...)`` with one row per update under its equation (lines
        relative to the statement's indent, laid out as ruff format lays them out); with ``dd``,
        made on ``__init__``'s device and dtype (``**dd``)."""
        lines = [f"{target} = CliqueBlock("]
        lines += [f"{INDENT}{key}={pyrepr(value)}," for key, value in self.options(program).items()]
        lines.append(f"{INDENT}schedule=[  # (j, k) computes Xj(k); the rows run in this order")
        pad = INDENT * 2
        stages = self.info.config.stages
        for index, op in enumerate(self.updates):
            j, k = op.attrs["node"][1:]
            if stages > 1 and (index == 0 or self.updates[index - 1].attrs["node"][2] != k):
                lines.append(f"{pad}# Stage {roman(k)}")
            row = f"({j}, {k}),  # "
            first, *rest = wrap_text(self.equation(op, program), LINE_LENGTH - 8 - len(pad + row), " + ")
            lines.append(pad + row + first)
            lines += [f"{pad}#   {more}" for more in rest]
        lines += [f"{INDENT}],", *[f"{INDENT}**dd,"] * dd, ")"]
        return lines

    def equation(self, op: Op, program: Program) -> str:
        """The update's stage equation, each run of three or more terms of consecutive layers
        of one stage written as its first and last term: ``X24(1) = g(W0,24*X0 + W1,24*X1(1)
        + ... + W23,24*X23(1))``."""
        _, j, k = op.attrs["node"]
        terms = [_node(program.values[name]) for name in op.inputs]
        runs: list[list[tuple[int, int]]] = []
        for i, stage in terms:
            run = runs[-1] if runs else None
            if run and i > 0 and run[-1][0] == i - 1 and run[-1][1] == stage:
                run.append((i, stage))
            else:
                runs.append([(i, stage)])
        shown = []
        for run in runs:
            text = [f"{weight_label(i, j)}*{node_label(i, stage)}" for i, stage in run]
            shown += [text[0], "...", text[-1]] if len(text) > 2 else text
        return f"{node_label(j, k)} = g({' + '.join(shown)})"

    # forward

    def call(self, x0: str) -> list[str]:
        """The forward statement that runs the block, under what it does."""
        n = len(self.updates)
        last = self.info.config.layers
        return [
            f"# the {n} updates of __init__'s schedule; after[k]: X1 to X{last} once stage k has run",
            f"after = self.{self.part}({x0}, self.memory_efficient)",
        ]

    def read(self, names: tuple[str, ...]) -> list[str]:
        """The items of a list of the block's values, as ``after[k]`` lists: ``[b3_x0, *after[1]]``
        reads ``(b3_x0, b3_x1_s1, ..., b3_x24_s1)``."""
        items: list[str] = []
        position = 0
        while position < len(names):
            if names[position] not in self.values:
                items.append(names[position])
                position += 1
                continue
            stage = next(
                (
                    k
                    for k in range(1, len(self.after))
                    if names[position : position + len(self.after[k])] == self.after[k]
                ),
                None,
            )
            if stage is None:
                raise AssertionError(f"{self.part}: {names} is no run of the block's values by stage")
            items.append(f"*after[{stage}]")
            position += len(self.after[stage])
        return items

    # the CliqueBlock reproduces the Program's block

    def check(self, program: Program) -> None:
        """Refuse (AssertionError) a block whose updates or declarations CliqueBlock would not
        reproduce: each update reads X0 in stage I and the newest value of every other layer,
        through the modules CliqueBlock names, which it makes in the Program's order."""
        block = self.info.config
        options = self.options(program)
        width, kernel = options.get("width", block.channels), block.conv_kernel
        norm = {key: options[key] for key in ("eps", "momentum") if key in options}
        init = {"init": options["init"]} if "init" in options else {}
        own = (lambda name, k: name) if block.share_weights else (lambda name, k: f"{name}_s{k}")
        expected: dict[str, tuple[str, dict[str, Any]]] = {}
        if block.dropout:
            expected["dropout"] = ("dropout", {"p": block.dropout})
        newest: dict[int, str] = {0: self.x0}

        def path(name: str) -> str:
            return f"{self.part}.{name}"

        for op in self.updates:
            _, j, k = op.attrs["node"]
            read = [0] * (k == 1) + sorted(set(newest) - {0, j})
            weights = [own(f"w{i}_{j}", k) for i in read]
            for i, name in zip(read, weights, strict=True):
                shape = (width, self.info.input_channels if i == 0 else block.channels, kernel, kernel)
                expected.setdefault(name, ("weight", {"shape": shape, **init}))
            inputs = sum(self.info.input_channels if i == 0 else block.channels for i in read)
            expected[f"bn{j}_s{k}"] = ("batch_norm", {"num_features": inputs, **norm})
            bottleneck = (None, None)
            if block.bottleneck:
                bottleneck = (f"bottleneck_bn{j}_s{k}", own(f"bottleneck{j}", k))
                expected[bottleneck[0]] = ("batch_norm", {"num_features": width, **norm})
                conv = {"in_channels": width, "out_channels": block.channels, "kernel_size": block.kernel}
                conv |= {"stride": 1, "padding": block.kernel // 2, **init}
                expected.setdefault(bottleneck[1], ("conv2d", conv))
            found = (op.inputs, op.attrs["weights"], op.attrs["bn"], op.attrs["padding"], op.attrs["dropout"])
            found += (op.attrs["bottleneck_bn"], op.attrs["bottleneck_conv"])
            wanted = (tuple(newest[i] for i in read), tuple(map(path, weights)), path(f"bn{j}_s{k}"))
            wanted += (kernel // 2, path("dropout") if block.dropout else None)
            wanted += tuple(None if name is None else path(name) for name in bottleneck)
            if found != wanted:
                raise AssertionError(f"{op.name}: CliqueBlock would run {wanted}, the Program runs {found}")
            newest[j] = op.name
        declared = [
            (path.removeprefix(f"{self.part}."), (decl.kind, decl.args))
            for path, decl in program.modules.items()
            if path.startswith(f"{self.part}.")
        ]
        if declared != list(expected.items()):
            raise AssertionError(f"{self.part}: CliqueBlock would not make the Program's modules")


def _node(op: Op) -> tuple[int, int]:
    """(layer, stage) of a value an update reads; (0, 0) for X0."""
    return op.attrs["node"][1:] if op.kind == "update" else (0, 0)


def rolled_blocks(compiled: Compiled) -> dict[str, RolledBlock]:
    """The blocks of :data:`ROLL_FROM` layers or more, by part, checked against the Program."""
    program = compiled.program
    rolled = {}
    for b, info in enumerate(graph_blocks(compiled.graph)):
        part = f"block{b + 1}"
        updates = tuple(op for op in program.ops if op.part == part and op.kind == "update")
        if info.config is None or info.config.layers < ROLL_FROM or not updates:  # None: explicit graph
            continue
        (x0,) = {name for op in updates for name in op.inputs if program.values[name].kind != "update"}
        newest: dict[int, str] = {}
        after = [(x0,)]
        for index, op in enumerate(updates):
            _, j, k = op.attrs["node"]
            newest[j] = op.name
            if index + 1 == len(updates) or updates[index + 1].attrs["node"][2] != k:
                after.append(tuple(newest[i] for i in sorted(newest)))
        block = RolledBlock(part, info, updates, x0, tuple(after))
        block.check(program)
        rolled[part] = block
    return rolled
