"""Resource limits, checked from the Spec alone before anything is built.

Lowering a spec builds one graph edge per term of the stage equations, about
``layers**2 * stages`` per block: ``layers: 100000`` would mean ~10^10 edges and a compiler
that never returns.  :func:`estimate` counts, in closed form and in microseconds, what the
spec asks for (the counts equal those of :func:`cliquegen.summary.summarize` on the built
Program), and :func:`check_limits` refuses a spec over the limits unless forced::

    spec needs ~1.2e14 parameters (limit 2e9), ~1.5e10 update-graph edges (limit 1e6); pass --force ...
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import Diagnostic, ResourceError
from .graph import ResolvedGraph
from .model import BlockConfig, GraphUse, Spec, compressed
from .network import ImageSpec

MAX_PARAMS = 2_000_000_000
#: The longest class name a data set or a checkpoint may carry (folder names are at most 255 bytes).
MAX_CLASS_NAME = 255
MAX_EDGES = 1_000_000
FALLBACK_MEMORY_BYTES = 16 * 1024**3
BYTES_PER_VALUE = 4  # float32

_lifted: contextvars.ContextVar[bool] = contextvars.ContextVar("cliquegen_limits_lifted", default=False)


def machine_memory_bytes() -> int:
    """Physical memory of this machine, or 16 GiB where the OS does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_BYTES
    return pages * page_size if pages > 0 and page_size > 0 else FALLBACK_MEMORY_BYTES


@dataclass(frozen=True)
class Estimate:
    """What a spec costs: parameters, the largest tensor of one image (float32), graph size."""

    params: int
    activation_bytes: int  # the largest single tensor of a forward pass, batch 1, float32
    edges: int  # UpdateGraph edges: one per term of a stage equation
    updates: int  # UpdateGraph nodes that are stage updates (every node but the X0s)


def estimate(spec: Spec | ImageSpec) -> Estimate:
    """Closed-form costs of ``spec``; no graph is built, so any valid spec takes microseconds."""
    if isinstance(spec, ImageSpec):
        return estimate_image(spec)
    blocks = spec.resolved_blocks()
    c_in, height, width = spec.input.channels, spec.input.height, spec.input.width
    stem = spec.stem.channels
    largest = c_in * height * width
    if spec.stem.kind == "cifar":
        params = c_in * stem * 9
        largest = max(largest, stem * height * width)
    else:  # 7x7/2 conv, BN, 3x3/2 max pool
        params = c_in * stem * 49 + 2 * stem
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        largest = max(largest, stem * height * width)
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1

    edges = updates = features = 0
    for block, c0 in zip(blocks, spec.block_input_channels(), strict=True):
        last = block.index == len(blocks) - 1
        head_reads = spec.head.kind == "multiscale" or last  # head kind `last` reads the last block only
        area = height * width
        if isinstance(block, GraphUse):  # its output feeds both the transition and the head
            cost = _block_cost(block.graph, c0)
            params, edges, updates = params + cost[0], edges + cost[1], updates + cost[2]
            transit = block.output_channels(c0)
            feature = transit if head_reads else 0
            largest = max(largest, cost[3] * area)
        else:
            cost, transit, feature, widest = _clique_cost(block, c0, head_reads, last)
            params, edges, updates = params + cost[0], edges + cost[1], updates + cost[2]
            largest = max(largest, widest * area)
        if not last:
            kept = compressed(transit, spec.transition.compression)
            params += 2 * transit + transit * kept  # BN, 1x1 conv C -> floor(compression * C)
            if spec.transition.attention:
                half = kept // 2
                params += (kept + 1) * half + (half + 1) * kept
        if head_reads:
            if spec.head.compression:
                params += 2 * feature + feature * (feature // 2)
                feature //= 2
            params += 2 * feature
            features += feature
        height, width = height // 2, width // 2
    params += (features + 1) * spec.num_classes
    return Estimate(params, largest * BYTES_PER_VALUE, edges, updates)


def _clique_cost(
    block: BlockConfig, c0: int, head_reads: bool, last: bool
) -> tuple[tuple[int, int, int], int, int, int]:
    """((parameters, edges, updates), transit, feature, widest value in channels) of a clique
    block reading ``c0`` channels; the feature is 0 where no head reads it."""
    n, k, kernel, k_out = block.layers, block.channels, block.conv_kernel, block.conv_channels
    params = 0
    pairs, widest_input, block_updates, bn_channels = _block_shape(block, c0)
    # n edges from X0, then each update reads the layers before it (Stage I: q at position
    # q) or all n - 1 others (later stages): the sum of those is the input channels / k
    edges = n + (bn_channels - n * c0) // k
    if block.share_weights:  # W0j and the W_ij, shared by all stages
        params += (n * c0 + pairs * k) * k_out * kernel**2
    else:  # every update has its own weights over its inputs
        params += bn_channels * k_out * kernel**2
    params += 2 * bn_channels  # one BatchNorm per update
    if block.bottleneck:
        convs = n if block.share_weights else block_updates
        params += convs * k_out * k * block.kernel**2 + block_updates * 2 * k_out
    transit = block.ref_channels(block.transit, c0)
    feature = block.ref_channels(block.feature, c0) if head_reads else 0
    bottleneck_out = k_out if block.bottleneck else 0
    widest = max(widest_input, bottleneck_out, feature, 0 if last else transit)
    return (params, edges, block_updates), transit, feature, widest


def _block_shape(block: BlockConfig, c0: int) -> tuple[int, int, int, int]:
    """(number of distinct W_ij with i, j >= 1; widest update input in channels; number of
    updates; total input channels of all updates, i.e. the BatchNorm features)."""
    n, k, stages = block.layers, block.channels, block.stages
    # Stage I: the update at position q reads X0 and the q layers before it.
    updates, bn_channels = n, n * c0 + k * n * (n - 1) // 2
    widest = c0 + (n - 1) * k
    full_later = max(stages - 1, 0) if block.partial is None else max(stages - 2, 0)
    partial = block.partial if block.partial is not None and stages >= 2 else None
    later_updates = full_later * n + (partial or 0)
    updates += later_updates
    bn_channels += later_updates * (n - 1) * k  # every later update reads the other n - 1 layers
    if later_updates:
        widest = max(widest, (n - 1) * k)
    if full_later:  # a full Stage II reads every ordered pair
        pairs = n * (n - 1)
    elif partial is not None:  # the first p updates read all others, the rest only earlier ones
        pairs = partial * (n - 1) + sum(range(partial, n))
    else:
        pairs = n * (n - 1) // 2
    return pairs, widest, updates, bn_channels


def estimate_image(spec: ImageSpec) -> Estimate:
    """Costs of an image network, walking its ops as the lowering does."""
    graphs = spec.resolved_graphs()
    c, h, w = spec.input.channels, spec.input.height, spec.input.width
    params = edges = updates = 0
    largest = c * h * w
    for op in spec.network:
        convs = []
        if op.op == "conv":
            convs.append(op)
        elif op.op == "dwt":
            c, h, w = 4 * c, h // 2, w // 2
        elif op.op == "idwt":
            c, h, w = c // 4, 2 * h, 2 * w
        elif op.op == "group":
            outputs = []
            for _ in range(op.blocks):
                cost = _block_cost(graphs[op.graph], c)
                params, edges, updates = params + cost[0], edges + cost[1], updates + cost[2]
                largest = max(largest, cost[3] * h * w)
                c = graphs[op.graph].output_width(c)
                outputs.append(c)
            if op.fuse is not None:
                largest = max(largest, sum(outputs) * h * w)  # their concatenation
                c = sum(outputs)
                convs.append(op.fuse)
        for conv in convs:
            params += (c * conv.kernel**2 + conv.bias + (conv.act == "prelu")) * conv.out
            c = conv.out
        largest = max(largest, c * h * w)
    return Estimate(params, largest * BYTES_PER_VALUE, edges, updates)


def _block_cost(graph: ResolvedGraph, c0: int) -> tuple[int, int, int, int]:
    """(parameters, edges, updates, widest value in channels) of one block of ``graph``
    reading ``c0`` channels: the parameters named once per update, per edge or per node as
    the weight scheme names them (compiler.lower_blocks)."""
    unit = graph.unit
    kernel = 1 if unit.bottleneck else unit.kernel
    widen = unit.bottleneck.width if unit.bottleneck else 1
    act_params = unit.kind == "post" and unit.act == "prelu"
    named: dict[tuple, int] = {}  # parameter -> its elements, once however often it is used
    widest = graph.output_width(c0)
    for j, stage, sources in graph.updates:
        width = graph.nodes[j - 1][1]
        out = widen * width
        channels = sum(graph.width(ref, c0) for ref in sources)
        widest = max(widest, channels, out)
        if graph.weights == "per-update":
            named[("w", j, stage)] = channels * out * kernel**2
            own: tuple = (j, stage)
        else:
            own = (j,) if graph.weights == "shared" else (j, stage)
            for ref in sources:
                key = ("w", ref[0], *own) if graph.weights == "shared" else ("w", ref[0], j, stage)
                named[key] = graph.width(ref, c0) * out * kernel**2
        if unit.kind == "pre":
            named[("bn", j, stage)] = 2 * channels
        if unit.bias:
            named[("bias", *own)] = width
        if act_params:
            named[("act", *own)] = width
        if unit.bottleneck:
            named[("bottleneck_bn", j, stage)] = 2 * out
            named[("bottleneck", *own)] = out * width * unit.bottleneck.kernel**2
    edges = sum(len(sources) for _, _, sources in graph.updates)
    return sum(named.values()), edges, len(graph.updates), widest


@contextlib.contextmanager
def lifted(force: bool = True) -> Iterator[None]:
    """Skip the limits inside the ``with`` (``--force`` of the CLI, for code that compiles
    deep inside a command); ``lifted(False)`` changes nothing."""
    token = _lifted.set(_lifted.get() or force)
    try:
        yield
    finally:
        _lifted.reset(token)


def check_limits(spec: Spec | ImageSpec, force: bool = False, *, path: str | None = None) -> Estimate:
    """Raise :class:`ResourceError` when ``spec`` is over a limit, unless ``force``.

    ``path`` is the file the spec came from, named in the message (default: the spec name).
    """
    cost = estimate(spec)
    if force or _lifted.get():
        return cost
    memory = machine_memory_bytes()
    problems = []
    if cost.params > MAX_PARAMS:
        problems.append(f"~{_sci(cost.params)} parameters (limit {_sci(MAX_PARAMS)})")
    if cost.activation_bytes > memory:
        problems.append(
            f"~{_gib(cost.activation_bytes)} for a single activation of one image "
            f"(this machine has {_gib(memory)} of memory)"
        )
    if cost.edges > MAX_EDGES:
        problems.append(f"~{_sci(cost.edges)} update-graph edges (limit {_sci(MAX_EDGES)})")
    if problems:
        message = f"spec needs {', '.join(problems)}; pass --force to build it anyway"
        raise ResourceError([Diagnostic(path if path is not None else spec.name, None, None, message)])
    return cost


def _sci(n: int) -> str:
    """``3.2e10``: two significant digits, as a person writes them."""
    mantissa, exponent = f"{n:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _gib(n: int) -> str:
    gib = n / 1024**3
    return f"{gib:,.0f} GiB" if gib >= 10 else f"{gib:.2g} GiB"
