"""Prose of the generated module: what the network is, and each block, feature and transit
stated as the docstrings and comments say them."""

from __future__ import annotations

from ..compiler.graph_blocks import GraphBlock
from ..compiler.ir import BlockInfo, graph_blocks
from ..compiler.lower import Compiled
from ..compiler.naming import roman
from ..spec.base import Provenance
from ..spec.model import BlockConfig, Spec
from .pytext import INDENT, LINE_LENGTH, doc_paragraph, wrap_text


def part_title(blocks: tuple[BlockInfo, ...], part: str) -> str:
    """``Stem``, ``Block 1: 4 layers of k=36, ...``, ``Transition 1``, ``Head``."""
    if part == "stem":
        return "Stem"
    if part.startswith("block") and part[5:].isdigit():
        info = blocks[int(part[5:]) - 1]
        graph = info.graph
        what = describe_block(info.config) if info.config else describe_graph(graph, graph.graph_name)
        return f"Block {part[5:]}: {what}"
    if part.startswith("transition") and part[10:].isdigit():
        return f"Transition {part[10:]}"
    return part.capitalize()


def describe_block(block: BlockConfig) -> str:
    """``4 layers of k=36, 2 stages, 3x3 W_ij, dropout 0.2`` and the other options set."""
    stages = f"{block.stages} stage{'s' if block.stages != 1 else ''}"
    phrases = [f"{block.layers} layers of k={block.channels}", stages]
    if block.partial is not None:
        updated = ", ".join(f"X{j}" for j in block.order[: block.partial]) or "no layer"
        phrases.append(f"stage {roman(block.stages)} updates only {updated}")
    if block.order != tuple(range(1, block.layers + 1)):
        phrases.append(f"order {' '.join(map(str, block.order))}")
    widened = f" to {block.bottleneck_width}k" if block.conv_channels != block.channels else ""
    phrases.append(f"{block.conv_kernel}x{block.conv_kernel} W_ij{widened}")
    if block.bottleneck:
        phrases.append(f"bottleneck {block.kernel}x{block.kernel} conv per layer")
    if not block.share_weights and block.stages > 1:
        phrases.append("each stage its own weights")
    if block.dropout:
        phrases.append(f"dropout {block.dropout}")
    return ", ".join(phrases)


def describe_graph(block: GraphBlock, graph_name: str) -> str:
    """``graph subband-clique: ll, lh, hl, hh of 32, input split, 2 stages, conv -> PReLU,
    one conv per update, output cat(...) + input``."""
    widths = {node.width for node in block.nodes}
    nodes = ", ".join(node.name for node in block.nodes)
    width = f" of {widths.pop()}" if len(widths) == 1 else ""
    unit = block.unit
    if unit.kind == "pre":
        text = f"BN -> ReLU -> {unit.kernel}x{unit.kernel} conv"
    else:
        act = {"relu": "ReLU", "prelu": "PReLU", "leaky_relu": f"LeakyReLU({unit.slope})"}[unit.act]
        text = f"{unit.kernel}x{unit.kernel} conv{' with bias' if unit.bias else ''} -> {act}"
    weights = {
        "per-update": "one conv per update",
        "shared": "W_ij shared by the stages",
        "untied": "each stage its own W_ij",
    }[block.weights]
    output = f"cat({', '.join(block.label(ref) for ref in block.output)})"
    if block.res_scale != 1:
        output += f" * {block.res_scale}"
    if block.residual:
        output += " + input"
    stages = f"{block.stages} stage{'s' if block.stages != 1 else ''}"
    split = ", input split" if block.split else ""
    return f"graph {graph_name}: {nodes}{width}{split}, {stages}, {text}, {weights}; output {output}"


def stage_values(block: BlockConfig, stage: int) -> str:
    """What a reference to ``stage`` reads: the stage, or after a partial last stage the newest
    value of each layer (``X1 of stage II, X2 to X5 of stage I``)."""
    if stage < block.stages or block.partial is None:
        return f"stage {roman(stage)}"
    updated = block.order[: block.partial]
    kept = [j for j in range(1, block.layers + 1) if j not in updated]
    parts = [(updated, stage), (kept, stage - 1)]
    newest = ", ".join(f"{layers_text(layers)} of stage {roman(s)}" for layers, s in parts if layers)
    return f"the newest value of each layer ({newest})"


def layers_text(layers: list[int] | tuple[int, ...]) -> str:
    """``X1``, ``X2 to X5`` for a run of consecutive layers, else ``X1, X3``."""
    if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"X{layers[0]} to X{layers[-1]}"
    return ", ".join(f"X{j}" for j in layers)


def describe_refs(block: BlockConfig, refs: tuple[str | int, ...]) -> str:
    """``X0 + stage I``: a feature or transit as the docstring states it."""
    return " + ".join("X0" if ref == "x0" else stage_values(block, ref) for ref in refs)


def is_densenet(spec: Spec) -> bool:
    """A DenseNet is clique blocks run for Stage I only, read by a head on the last block."""
    blocks = spec.resolved_blocks()
    return spec.head.kind == "last" and all(isinstance(b, BlockConfig) and b.stages == 1 for b in blocks)


def network_kind(spec: Spec) -> list[str]:
    """The header's first lines: what the network is."""
    if is_densenet(spec):
        return [
            f"{spec.name}: a DenseNet (Huang et al., CVPR 2017) in plain PyTorch.",
            "Its dense blocks are clique blocks (CliqueNet, Yang et al., CVPR 2018) run for Stage I only.",
        ]
    return [f"{spec.name}: a clique network (CliqueNet, Yang et al., CVPR 2018) in plain PyTorch."]


def module_header(spec: Spec, origin: Provenance, generator: str) -> list[str]:
    """The module docstring's lines: what the network is, where it came from, how to use it."""
    return [
        *network_kind(spec),
        "",
        f"{generator}; do not edit: change the spec and build again.",
        *doc_paragraph(f"Spec: {origin.path}", ""),
        f"sha256 of its {origin.hashed}: {origin.sha256}",
        "Needs only torch; ``Model()`` builds the network with fresh weights.",
        "The model class comes first; the runtime functions it calls follow it.",
    ]


def class_doc(compiled: Compiled, params: int, flops: int, num_features: int) -> list[str]:
    """The model class's docstring lines: ``The DenseNet ``densenet-121``.``, the spec's
    description, the architecture."""
    spec = compiled.spec
    doc = [f"The {'DenseNet' if is_densenet(spec) else 'CliqueNet'} ``{spec.name}``.", ""]
    if spec.description:
        doc += doc_paragraph(spec.description, INDENT) + [""]
    return doc + architecture(compiled, params, flops, num_features)


def architecture(compiled: Compiled, params: int, flops: int, num_features: int) -> list[str]:
    """Docstring lines stating the network: input, stem, blocks, transitions, head."""
    spec = compiled.spec
    blocks = graph_blocks(compiled.graph)
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
        block = info.config
        last = b + 1 == len(blocks)
        read = last or spec.head.kind == "multiscale"  # head kind `last` reads the last block only
        if block is None:  # a graph block: its output goes on and to the head
            lines.append(f"Block {b + 1}: {describe_graph(info.graph, info.graph.graph_name)};")
            readers = [r for r, used in (("the head", read), ("the next block", not last)) if used]
            to = " and ".join(readers)
            lines.append(f"{INDENT}X0 of {info.input_channels} channels; its output to {to}.")
            continue
        feature = describe_refs(block, block.feature)
        lines.append(f"Block {b + 1}: {describe_block(block)};")
        carried = ""
        if not last:
            transit = describe_refs(block, block.transit)
            same = read and feature.endswith(transit) and transit.startswith("the newest")
            carried = ", also carried to the next block" if same else f", {transit} to the next block"
        shown = f"; feature {feature}" if read else ""
        lines.append(f"{INDENT}X0 of {info.input_channels} channels{shown}{carried}.")
    if len(blocks) > 1:
        ratio = spec.transition.compression
        kept = f" keeping floor({ratio} C) channels" if ratio != 1 else ""
        attention = " squeeze-and-excitation attention," if spec.transition.attention else ""
        dropped = any(i.config and i.config.dropout for i in blocks[:-1])
        dropout = " dropout at the rate of the block before," if dropped else ""
        lines.append(f"Transitions: BN, ReLU, 1x1 conv{kept},{dropout}{attention} 2x2 average pool.")
    if spec.head.kind == "last":
        lines.append("Head: the last block's feature, BN, ReLU, global average pool;")
        lines.append(f"{INDENT}({num_features} features) -> linear.")
    else:
        dropped = any(info.config and info.config.dropout for info in blocks)
        dropout = ", dropout" if dropped else ""  # at its block's rate
        compression = f" compressed to half (BN, ReLU, 1x1 conv{dropout})," if spec.head.compression else ""
        lines.append(f"Head: each block feature{compression} BN, ReLU, global average pool;")
        lines.append(f"{INDENT}concatenated ({num_features} features) -> linear.")
    wrapped = []
    for line in lines:  # continuation lines are indented once more
        indent = line[: len(line) - len(line.lstrip(" "))]
        first, *rest = wrap_text(line.lstrip(" "), LINE_LENGTH - len(INDENT + indent), ", ")
        wrapped += [indent + first, *(INDENT + indent + more for more in rest)]
    return wrapped
