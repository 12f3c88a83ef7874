"""The authors' PyTorch ImageNet checkpoints <-> cliquegen state_dicts.

The authors' ImageNet code (docs/paper.md, "The authors' PyTorch ImageNet code")
names its modules ``fir_trans``, ``list_block.b.conv_param.{i*(n+1)+j}``, ``loop_bn`` ...;
cliquegen names the same tensors ``stem.conv``, ``block{b+1}.w{i}_{j}``, ``bn{j}_s2`` ...
:func:`official_mapping` pairs the two names of every tensor, with the shape cliquegen
expects, from the spec's compiled Program; :func:`from_official` and :func:`to_official`
apply it strictly: every source tensor is used exactly once, every target is filled, every
shape is checked, and anything else raises :class:`~cliquegen.errors.WeightsError`.

Two tolerated differences, both documented in ``docs/weights.md``:

- ``num_batches_tracked`` buffers are mapped when present and filled with 0 when absent
  (checkpoints saved before PyTorch 0.4.1 have none; eval-mode BatchNorm does not read them);
- ``list_block.b.conv_param.0`` (i = 0, j = 0: X0 into X0, which no equation uses; their
  published code never saves it) is accepted and ignored; every other unused ``conv_param``
  entry is an error.

:func:`load_weights_file` and :func:`save_weights_file` are the only ways the CLI touches
weight files: loading never unpickles anything but tensors and plain containers
(``weights_only=True``), and saving is atomic.  Both also speak safetensors (a flat
``name -> tensor`` file with string metadata and no code at all): a file is read as one when
its bytes are one, whatever its name, and written as one when its name ends in
``.safetensors``.  :func:`save_safetensors_file` and :func:`read_safetensors_file` also carry
the metadata; :func:`info_metadata` writes a checkpoint's :class:`ModelInfo` into it (the
spec's text and sha256, class names, normalisation), and reading such a file gives a
checkpoint again (``{"model": tensors, "info": ...}``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_output, torch_save_atomic
from .checkpoint import ModelInfo
from .errors import WeightsError
from .ir import ModuleDecl
from .lower import compile_spec
from .spec import Spec

#: Name of the only format so far, as the CLI spells it.
OFFICIAL_FORMAT = "official-pytorch"

#: Weight files larger than this are refused before reading (the authors' S3 checkpoint,
#: optimizer state included, is about 120 MB).
MAX_FILE_BYTES = 2 * 1024**3

#: The prefix ``nn.DataParallel`` adds to every key of the model it wraps.
DATA_PARALLEL_PREFIX = "module."

#: Tensors of each kind of declared module, as suffixes of the module path
#: ("" is a bare Parameter, e.g. a W_ij).
_TENSORS = {
    "weight": ("",),
    "conv2d": (".weight",),
    "batch_norm": (".weight", ".bias", ".running_mean", ".running_var", ".num_batches_tracked"),
    "linear": (".weight", ".bias"),
    "dropout": (),
    "identity": (),
}

_BLOCK_MODULE = re.compile(
    r"^block(?P<block>\d+)\.(?:"
    r"w(?P<i>\d+)_(?P<j>\d+)"
    r"|bn(?P<bn>\d+)_s(?P<bn_stage>\d+)"
    r"|bottleneck_bn(?P<bbn>\d+)_s(?P<bbn_stage>\d+)"
    r"|bottleneck(?P<bottle>\d+)"
    r")$"
)
_NUMBERED_MODULE = re.compile(
    r"^(?P<part>transition|head\.compress|head\.bn)(?P<block>\d+)(?P<rest>(\..*)?)$"
)


@dataclass(frozen=True)
class Entry:
    """One tensor under its two names, with the shape cliquegen's model gives it."""

    ours: str
    theirs: str
    shape: tuple[int, ...]


@dataclass
class Conversion:
    """A converted state_dict and what the conversion tolerated on the way."""

    state_dict: dict[str, torch.Tensor]
    ignored: list[str] = field(default_factory=list)  # source keys accepted but not used
    filled: list[str] = field(default_factory=list)  # target keys the source lacked (zeros)


# --------------------------------------------------------------------------- the mapping


def check_convertible(spec: Spec) -> None:
    """Raise WeightsError unless the spec has the layout the authors' ImageNet code builds."""
    problems = []
    if spec.stem.kind != "imagenet":
        problems.append(f"stem.kind is {spec.stem.kind!r}; their code has the imagenet stem")
    if spec.input.channels != 3:
        problems.append(f"input.channels is {spec.input.channels}; their stem reads 3 channels")
    if spec.head.kind != "multiscale":
        problems.append(f"head.kind is {spec.head.kind!r}; their head is multiscale")
    elif not spec.head.compression:
        problems.append("head.compression is false; their head always compresses")
    if spec.transition.compression != 1:
        ratio = spec.transition.compression
        problems.append(f"transition.compression is {ratio}; their transitions keep all C channels")
    for block in spec.resolved_blocks():
        at = f"block {block.index + 1}"
        if not block.bottleneck:
            problems.append(f"{at}: bottleneck is false; their blocks always have the bottleneck")
        elif block.kernel != 3:
            problems.append(f"{at}: kernel is {block.kernel}; their bottleneck convs are 3x3")
        if block.stages != 2:
            problems.append(f"{at}: stages is {block.stages}; their blocks run Stage I and Stage II")
        if block.partial is not None:
            problems.append(f"{at}: partial is {block.partial}; their Stage II updates every layer")
        if list(block.order) != sorted(block.order):
            problems.append(f"{at}: order is {list(block.order)}; their order is ascending")
        if list(block.feature) != ["x0", 2]:
            problems.append(f"{at}: feature is {list(block.feature)}; their block feature is [x0, 2]")
        if block.transit != (2,) and block.index + 1 < len(spec.blocks):
            shown = block.transit[0] if len(block.transit) == 1 else list(block.transit)
            problems.append(f"{at}: transit is {shown}; they carry Stage II to the next block")
        if not block.share_weights:
            problems.append(f"{at}: share_weights is false; their stages share every W_ij")
        if block.bottleneck_width != 1:
            width = block.bottleneck_width
            problems.append(f"{at}: bottleneck_width is {width}; their W_ij produce k channels")
    if problems:
        raise WeightsError(
            f"spec {spec.name!r} cannot hold the authors' {OFFICIAL_FORMAT} weights:\n  "
            + "\n  ".join(problems)
        )


def official_mapping(spec: Spec) -> list[Entry]:
    """Every tensor of the spec's model: cliquegen name, authors' name (no ``module.``), shape.

    In cliquegen's parameter order; raises WeightsError for a spec their code cannot express.
    """
    check_convertible(spec)
    program = compile_spec(spec).program
    layers = [block.layers for block in spec.resolved_blocks()]
    entries = []
    for path, decl in program.modules.items():
        theirs = _official_module(path, layers)
        for suffix, shape in zip(_TENSORS[decl.kind], _shapes(decl), strict=True):
            name = theirs + (suffix or ".weight")  # a bare W_ij is their conv's .weight
            entries.append(Entry(path + suffix, name, shape))
    return entries


def _official_module(path: str, layers: list[int]) -> str:
    """The authors' module path of one of our module paths."""
    fixed = {"stem.conv": "fir_trans", "stem.bn": "fir_bn", "classifier": "fc"}
    if path in fixed:
        return fixed[path]
    match = _BLOCK_MODULE.match(path)
    if match:
        g = {key: int(value) for key, value in match.groupdict().items() if value is not None}
        b = g["block"] - 1
        at = f"list_block.{b}"
        if "i" in g:  # W_ij, i = 0 is X0
            return f"{at}.conv_param.{g['i'] * (layers[b] + 1) + g['j']}"
        if "bottle" in g:
            return f"{at}.conv_param_bottle.{g['bottle'] - 1}"
        if "bn" in g:
            return f"{at}.{_stage_list('bn', g['bn_stage'])}.{g['bn'] - 1}"
        return f"{at}.{_stage_list('bn_b', g['bbn_stage'])}.{g['bbn'] - 1}"
    match = _NUMBERED_MODULE.match(path)
    if match:
        b = int(match["block"]) - 1
        part = {"transition": "list_trans", "head.compress": "list_compress", "head.bn": "list_gb"}
        rest = match["rest"] if match["part"] != "head.bn" else ".bn"
        return f"{part[match['part']]}.{b}{rest}"
    raise WeightsError(f"internal: no name in the {OFFICIAL_FORMAT} layout for module {path!r}")


def _stage_list(kind: str, stage: int) -> str:
    """Their BatchNorm lists: forward_* for Stage I, loop_* for Stage II."""
    if stage not in (1, 2):
        raise WeightsError(f"internal: the {OFFICIAL_FORMAT} layout has no stage {stage}")
    return ("forward_" if stage == 1 else "loop_") + kind


def _shapes(decl: ModuleDecl) -> list[tuple[int, ...]]:
    """Shapes of the tensors of a declared module, in the order of ``_TENSORS[kind]``."""
    a = decl.args
    if decl.kind == "weight":
        return [tuple(a["shape"])]
    if decl.kind == "conv2d":
        return [(a["out_channels"], a["in_channels"], a["kernel_size"], a["kernel_size"])]
    if decl.kind == "batch_norm":
        c = a["num_features"]
        return [(c,), (c,), (c,), (c,), ()]
    if decl.kind == "linear":
        return [(a["out_features"], a["in_features"]), (a["out_features"],)]
    if decl.kind in ("dropout", "identity"):
        return []
    raise WeightsError(f"internal: unknown module kind {decl.kind!r} of {decl.path!r}")


def _is_ignored_official_key(key: str) -> bool:
    """``list_block.b.conv_param.0.weight``: W_00 (X0 into X0), built by some versions of
    their code but used by no equation."""
    return re.fullmatch(r"list_block\.\d+\.conv_param\.0\.weight", key) is not None


# --------------------------------------------------------------------------- conversion


def from_official(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """The authors' checkpoint (full dict or bare state_dict, ``module.`` keys or not) in
    cliquegen's names, ready for ``create_model(spec).load_state_dict(..., strict=True)``."""
    return convert_from_official(state_dict, spec).state_dict


def to_official(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """A cliquegen state_dict in the authors' names (no ``module.`` prefix; see
    :func:`official_checkpoint` for the file their training script writes)."""
    pairs = [(e.ours, e.theirs, e.shape) for e in official_mapping(spec)]
    source = _plain_state_dict(state_dict)
    _check_overlap(source, pairs, "the cliquegen", f"the {OFFICIAL_FORMAT} checkpoint", "export-weights")
    return _convert(source, pairs, spec, ignore=lambda key: False).state_dict


def convert_from_official(state_dict: Mapping[str, Any], spec: Spec) -> Conversion:
    """:func:`from_official`, also saying which keys were ignored or filled."""
    pairs = [(e.theirs, e.ours, e.shape) for e in official_mapping(spec)]
    source = _plain_state_dict(state_dict)
    _check_overlap(source, pairs, f"the {OFFICIAL_FORMAT}", "a cliquegen state_dict", "import-weights")
    return _convert(source, pairs, spec, ignore=_is_ignored_official_key)


def _check_overlap(
    source: dict[str, Any], pairs: list[tuple[str, str, tuple[int, ...]]], layout: str, other: str, fix: str
) -> None:
    """A clear message when no key at all is of the expected layout (the wrong kind of file)."""
    names = {name for name, _, _ in pairs}
    if names & set(source):
        return
    keys = sorted(source)
    hint = ""
    if {target for _, target, _ in pairs} & set(source):
        hint = f"; its keys are those of {other} already: no `{fix}` is needed"
    raise WeightsError(
        f"no key of the state_dict ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}) "
        f"is a key of {layout} layout (such as {pairs[0][0]}){hint}"
    )


def official_checkpoint(state_dict: Mapping[str, Any], spec: Spec, *, epoch: int = 0) -> dict[str, Any]:
    """What their ImageNet training script saves: ``module.``-prefixed weights (it trains under
    ``nn.DataParallel``), the epoch, best top-1 and an SGD state their ``--resume`` accepts."""
    theirs = to_official(state_dict, spec)
    params = [key for key in theirs if not key.rsplit(".", 1)[-1].startswith(("running_", "num_batches"))]
    sgd_group = {
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0,
        "weight_decay": 1e-4,
        "nesterov": False,
        "params": list(range(len(params))),
    }
    return {
        "epoch": epoch,
        "state_dict": {DATA_PARALLEL_PREFIX + key: value for key, value in theirs.items()},
        "best_prec1": 0.0,
        "optimizer": {"state": {}, "param_groups": [sgd_group]},
    }


def check_loads(state_dict: Mapping[str, torch.Tensor], spec: Spec) -> None:
    """Raise WeightsError unless ``create_model(spec)`` loads the state_dict with strict=True."""
    from ._builder import build_fx

    load_weights(build_fx(spec), state_dict, spec)


# --------------------------------------------------------------------------- loading into a model

#: Prefixes that wrappers add to every key: ``nn.DataParallel``/DDP and ``torch.compile``.
_WRAPPER_PREFIXES = (DATA_PARALLEL_PREFIX, "_orig_mod.")

#: Key layouts a weights file may have: (what it is, a test on its keys, import-weights format).
_LAYOUTS = (
    (
        f"the authors' {OFFICIAL_FORMAT} checkpoint layout",
        re.compile(r"^(fir_trans|fir_bn|list_block|list_trans|list_compress|list_gb)\."),
        OFFICIAL_FORMAT,
    ),
    (
        "torchvision's DenseNet layout",
        re.compile(r"^features\.(conv0|norm0|denseblock\d+|transition\d+|norm5)\."),
        "torchvision",  # TORCHVISION_FORMAT, defined with its conversion below
    ),
    (
        "the layout of a cliquegen model",
        re.compile(r"^(stem|block\d+|transition\d+|head|classifier)\."),
        None,
    ),
)


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike[str] | Mapping[str, Any],
    spec: Spec,
    *,
    spec_arg: str | None = None,
) -> nn.Module:
    """Load ``weights`` into ``model`` (built from ``spec``) with ``strict=True``; return it.

    ``weights`` is a file (read by :func:`load_weights_file`) or what one holds: a state_dict,
    a ``cliquegen train`` checkpoint (its ``model``), or a checkpoint with a ``state_dict``;
    ``module.`` and ``_orig_mod.`` prefixes are removed.  Before anything is copied, every
    tensor must have the model's key and shape and a dtype of the same kind (floating point
    for weights and statistics, integer for ``num_batches_tracked``), and floating-point
    values must be finite.  Otherwise :class:`WeightsError` says, in a few lines, which
    layout the file looks like (the authors', torchvision's, a cliquegen model of another
    spec, naming it when the checkpoint records it), the command that converts it, and the
    first problems of each kind.  ``spec_arg`` is how the user named the spec (for that
    command; default ``spec.name``).
    """
    is_file = isinstance(weights, (str, os.PathLike))
    source = os.fspath(weights) if is_file else ""
    obj = load_weights_file(weights) if is_file else weights
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{_at(source)}expected a state_dict or a checkpoint, got {type(obj).__name__}")
    recorded = _recorded_spec(obj)
    state = _unwrapped(obj, source)
    expected = model.state_dict()
    problems = _fit_problems(state, expected)
    if problems:
        raise WeightsError(_misfit_message(source, state, spec, spec_arg or spec.name, recorded, problems))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # not expected after the checks above; say so plainly
        raise WeightsError(
            f"{_at(source)}the weights do not load into spec {spec.name!r}: {_first_line(error)}"
        ) from None
    return model


def _at(source: str) -> str:
    """The prefix naming a weights file in messages (none for an object)."""
    return f"{source}: " if source else ""


def _unwrapped(obj: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The state_dict inside a checkpoint, wrapper prefixes removed."""
    for key in ("model", "state_dict"):  # cliquegen train; the authors' and most others
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"{_at(source)}expected a state_dict with string keys, found the key {key!r}")
        name = key
        while name.startswith(_WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        if name in state:
            raise WeightsError(
                f"{_at(source)}the key {name!r} appears both with and without a wrapper prefix"
            )
        state[name] = value
    if not state:
        raise WeightsError(f"{_at(source)}the state_dict is empty")
    return state


def _recorded_spec(obj: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(name, sha256) of the spec a cliquegen checkpoint records, if it records one: its
    ``info`` (``spec_name``, ``spec_sha256``), ``spec`` as a name or as ``{"name", "sha256"}``,
    or ``settings.spec`` (a name)."""
    info = obj.get("info")  # cliquegen.checkpoint.ModelInfo as a dict
    if isinstance(info, Mapping) and isinstance(info.get("spec_name"), str):
        sha = info.get("spec_sha256")
        return info["spec_name"], sha if isinstance(sha, str) else None
    record = obj.get("spec")
    if record is None and isinstance(obj.get("settings"), Mapping):
        record = obj["settings"].get("spec")
    if isinstance(record, str):
        return record, None
    if isinstance(record, Mapping) and isinstance(record.get("name"), str):
        sha = record.get("sha256")
        return record["name"], sha if isinstance(sha, str) else None
    return None


@dataclass
class _Problems:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # not a tensor, or the wrong kind of dtype
    values: list[str] = field(default_factory=list)  # NaN or infinity

    def __bool__(self) -> bool:
        return any((self.missing, self.unexpected, self.shapes, self.kinds, self.values))


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def _fit_problems(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]) -> _Problems:
    problems = _Problems()
    for name, target in expected.items():
        if name not in state:
            problems.missing.append(f"{name} {_shape(target.shape)}")
            continue
        value = state[name]
        if not isinstance(value, torch.Tensor):
            problems.kinds.append(f"{name} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(target.shape):
            problems.shapes.append(
                f"{name}: {_shape(value.shape)} in the file, {_shape(target.shape)} in the model"
            )
        elif _dtype_kind(value.dtype) != _dtype_kind(target.dtype):
            problems.kinds.append(
                f"{name} holds {_dtype_kind(value.dtype)} values ({value.dtype}), expected "
                f"{_dtype_kind(target.dtype)} ({target.dtype})"
            )
        elif value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            problems.values.append(name)
    problems.unexpected = [
        f"{name} {_shape(getattr(value, 'shape', '?'))}"
        for name, value in state.items()
        if name not in expected
    ]
    return problems


def _misfit_message(
    source: str,
    state: Mapping[str, Any],
    spec: Spec,
    spec_arg: str,
    recorded: tuple[str, str | None] | None,
    problems: _Problems,
) -> str:
    lines = [f"{_at(source)}the weights do not fit spec {spec.name!r}"]
    layout = next(((what, fmt) for what, pattern, fmt in _LAYOUTS if any(map(pattern.match, state))), None)
    if recorded is not None:
        name, sha = recorded
        saved = f"spec {name!r}" + (f" (sha256 {sha})" if sha else "")
        if name != spec.name:
            lines[0] += f": it holds the weights of {saved}; build the model from that spec"
        else:
            lines[0] += (
                f": it holds the weights of {saved} as it was when they were saved; the spec has changed"
            )
    elif layout is not None and layout[1] is not None:
        what, fmt = layout
        lines[0] += f": it has {what}"
        if fmt in IMPORT_FORMATS:
            lines[0] += (
                f"; convert it first: cliquegen import-weights --format {fmt} {source or 'W.pt'} "
                f"--spec {spec_arg} -o converted.pt"
            )
        else:
            lines[0] += (
                f", which cliquegen does not convert (import-weights reads {', '.join(IMPORT_FORMATS)})"
            )
    elif layout is not None:
        lines[0] += ": it has the layout of a cliquegen model of another spec (or of another version of it)"
    else:
        keys = sorted(state)
        shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        lines[0] += f": its keys ({shown}) are of no layout cliquegen knows"
    for label, items in (
        ("missing", problems.missing),
        ("unexpected", problems.unexpected),
        ("of another shape", problems.shapes),
        ("of the wrong type", problems.kinds),
        ("with NaN or infinite values", problems.values),
    ):
        if items:
            more = f", ... ({len(items) - 3} more)" if len(items) > 3 else ""
            lines.append(
                f"  {len(items)} tensor{'s' if len(items) > 1 else ''} {label}: {'; '.join(items[:3])}{more}"
            )
    return "\n".join(lines)


def _plain_state_dict(obj: Any) -> dict[str, Any]:
    """The state_dict inside a checkpoint, with any ``module.`` prefix removed."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # {"epoch", "state_dict", "best_prec1", "optimizer"}
    plain: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise WeightsError(f"expected a state_dict with string keys, found the key {key!r}")
        name = key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key
        if name in plain:
            raise WeightsError(f"the key {name!r} appears both with and without the `module.` prefix")
        plain[name] = value
    if not plain:
        raise WeightsError("the state_dict is empty")
    return plain


def _convert(
    source: dict[str, Any],
    pairs: list[tuple[str, str, tuple[int, ...]]],
    spec: Spec,
    ignore: Callable[[str], bool],
) -> Conversion:
    """Copy ``source[name]`` to ``target`` for every (name, target, shape); strict about the rest."""
    return _convert_links(
        source, [Link(((name, shape),), ((target, shape),)) for name, target, shape in pairs], spec, ignore
    )


@dataclass(frozen=True)
class Link:
    """Source tensors that make target tensors: the sources concatenated along dim 1 are the
    targets concatenated along dim 1 (one to one, or a conv weight over a concatenated input
    and the W_ij that are its slices); each as (name, shape)."""

    sources: tuple[tuple[str, tuple[int, ...]], ...]
    targets: tuple[tuple[str, tuple[int, ...]], ...]


def _convert_links(
    source: dict[str, Any], links: list[Link], spec: Spec, ignore: Callable[[str], bool]
) -> Conversion:
    """Fill every link's targets from its sources; strict: every source key used once, every
    shape checked, every problem listed."""
    result = Conversion({})
    problems: list[str] = []
    for link in links:
        names = " + ".join(target for target, _ in link.targets)
        values = []
        for name, shape in link.sources:
            value = source.get(name)
            if value is None:
                if name.endswith(".num_batches_tracked"):  # absent from pre-0.4.1 checkpoints
                    value = torch.zeros((), dtype=torch.long)
                    result.filled.append(link.targets[0][0])
                else:
                    problems.append(f"missing {name} (for {names}, shape {_shape(shape)})")
                    continue
            elif not isinstance(value, torch.Tensor):
                problems.append(f"{name} (for {names}) is a {type(value).__name__}, not a tensor")
                continue
            elif tuple(value.shape) != shape:
                problems.append(
                    f"{name} (for {names}) has shape {_shape(value.shape)}, expected {_shape(shape)}"
                )
                continue
            elif _dtype_kind(value.dtype) != _expected_kind(name):
                problems.append(
                    f"{name} (for {names}) holds {_dtype_kind(value.dtype)} values ({value.dtype}), "
                    f"expected {_expected_kind(name)}"
                )
                continue
            values.append(value.detach())
        if len(values) != len(link.sources):
            continue
        if len(link.sources) == 1 and len(link.targets) == 1:
            result.state_dict[link.targets[0][0]] = values[0].clone()
            continue
        whole = torch.cat(values, 1)
        parts = torch.split(whole, [shape[1] for _, shape in link.targets], 1)
        for (target, _), part in zip(link.targets, parts, strict=True):
            result.state_dict[target] = part.clone()
    used = {name for link in links for name, _ in link.sources}
    for key, value in source.items():
        if key in used:
            continue
        if ignore(key):
            result.ignored.append(key)
        else:
            problems.append(f"unexpected {key} (shape {_shape(getattr(value, 'shape', '?'))})")
    if problems:
        shown = "\n  ".join(problems[:8])
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        plural = "s" if len(problems) > 1 else ""
        raise WeightsError(
            f"the weights do not fit spec {spec.name!r} ({len(problems)} problem{plural}):\n  {shown}{more}"
        )
    return result


def _expected_kind(name: str) -> str:
    """What a tensor of a state_dict holds: counts in ``num_batches_tracked``, else real numbers."""
    return "integer" if name.endswith(".num_batches_tracked") else "floating-point"


def _shape(shape: Any) -> str:
    return str(tuple(shape)) if not isinstance(shape, str) else shape


# --------------------------------------------------------------------------- files


def load_weights_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read a ``torch.save`` file of tensors and plain containers, or a safetensors file (its
    tensors); never runs code from it.

    Missing, empty, oversized (over ``max_bytes``, default :data:`MAX_FILE_BYTES`), corrupt,
    truncated and non-weights files raise WeightsError.
    """
    file = _checked_file(path, max_bytes)
    if is_safetensors(file):  # with cliquegen's metadata: a checkpoint's model and info
        tensors, metadata = read_safetensors_file(file, max_bytes=max_bytes)
        info = info_from_metadata(metadata, file)
        return tensors if info is None else {"model": tensors, "info": info.to_dict()}
    _check_unpacked_size(file, MAX_FILE_BYTES if max_bytes is None else max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 in the checkpoint"
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{file}: refused (nothing in it was run): it is corrupt, or it holds more than tensors "
            f"and plain containers (objects or code that weights-only loading does not allow): "
            f"{_first_line(error)}"
        ) from None
    except Exception as error:  # torch reports damage as RuntimeError, EOFError, ValueError ...
        raise WeightsError(
            f"{file}: cannot read it as a PyTorch weights file (truncated or corrupt?): "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{file}: holds a {type(obj).__name__}, not a checkpoint or state_dict")
    return dict(obj)


def _check_unpacked_size(file: Path, max_bytes: int) -> None:
    """Refuse a zip-format file (what ``torch.save`` writes) whose entries unpack to more than
    ``max_bytes``: torch reads deflate-compressed entries too, so a small file could otherwise
    expand to gigabytes.  The older non-zip format stores tensors uncompressed."""
    try:
        with file.open("rb") as stream:
            if stream.read(4) != b"PK\x03\x04":
                return
            with zipfile.ZipFile(stream) as archive:
                entries = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise WeightsError(
            f"{file}: cannot read it as a PyTorch weights file (truncated or corrupt?): {error}"
        ) from None
    unpacked = sum(entry.file_size for entry in entries)
    if unpacked > max_bytes:
        raise WeightsError(
            f"{file}: it unpacks to {unpacked:,} bytes, over the {max_bytes:,}-byte limit for weight files"
        )


def _first_line(error: BaseException) -> str:
    """The informative line of a torch.load error (not its generic advice)."""
    generic = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(generic)] or lines or [type(error).__name__]
    return lines[0] if len(lines[0]) <= 300 else lines[0][:297] + "..."


def _checked_file(path: str | os.PathLike[str], max_bytes: int | None) -> Path:
    """``path`` when it is a non-empty regular file within the size limit, else WeightsError."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise WeightsError(f"{file}: no such file") from None
    except OSError as error:
        raise WeightsError(f"{file}: cannot read: {error.strerror or error}") from None
    if not file.is_file():
        raise WeightsError(f"{file}: not a regular file")
    if size == 0:
        raise WeightsError(f"{file}: the file is empty")
    if size > max_bytes:
        raise WeightsError(
            f"{file}: its {size:,} bytes is over the {max_bytes:,}-byte limit for weight files "
            "(a CliqueNet-S3 checkpoint with its optimizer state is about 120 MB)"
        )
    return file


def save_weights_file(
    obj: Any, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
) -> None:
    """``torch.save`` (or, for a ``.safetensors`` name, :func:`save_safetensors_file` with
    ``metadata``) to a temporary file beside ``path``, then rename it: atomic."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(f"{target}: cannot write: {error.strerror or error}") from None
    if target.suffix == SAFETENSORS_SUFFIX:
        save_safetensors_file(obj, target, metadata=metadata)
    else:
        torch_save_atomic(obj, target)


# --------------------------------------------------------------------------- safetensors

SAFETENSORS_SUFFIX = ".safetensors"

#: The largest JSON header we read (safetensors' own limit is 100 MB).
_SAFETENSORS_MAX_HEADER = 100 * 1024**2


def is_safetensors(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts like a safetensors file: an 8-byte little-endian header length
    that fits in the file, then a JSON object."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(9)
            size = os.fstat(stream.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and length <= min(size - 8, _SAFETENSORS_MAX_HEADER)


def info_metadata(info: ModelInfo) -> dict[str, str]:
    """What cliquegen writes beside safetensors weights: the checkpoint's :class:`ModelInfo`
    as flat strings (``spec_name``, ``spec_sha256``, ``input_size``, ``classes``, ``mean``,
    ``std``, ``eval_transform``: JSON where not text), plus ``spec`` (the spec's text) and,
    when set, ``data`` and ``overrides``."""
    metadata: dict[str, Any] = {**info.metadata(), "spec": info.spec_text}
    if info.data is not None:
        metadata["data"] = info.data
    if info.overrides:
        metadata["overrides"] = info.overrides
    return _metadata_strings(metadata)


def info_from_metadata(metadata: Mapping[str, str], source: str | os.PathLike[str]) -> ModelInfo | None:
    """The ModelInfo that :func:`info_metadata` wrote; None for other tools' safetensors."""
    if not {"spec", "spec_name", "spec_sha256", "input_size"} <= set(metadata):
        return None
    fields: dict[str, Any] = {"spec_name": metadata["spec_name"], "spec_text": metadata["spec"]}
    fields["spec_sha256"] = metadata["spec_sha256"]
    for key in ("input_size", "classes", "mean", "std", "overrides"):
        if key in metadata:
            try:
                fields[key] = json.loads(metadata[key])
            except ValueError:
                raise WeightsError(f"{source}: its metadata {key!r} is not JSON") from None
    for key in ("data", "eval_transform"):
        if key in metadata:
            fields[key] = metadata[key]
    return ModelInfo.from_dict(fields, source)


def _metadata_strings(metadata: Mapping[str, Any]) -> dict[str, str]:
    """safetensors metadata is ``str -> str``: strings as they are, anything else as JSON."""
    return {
        str(key): value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()
    }


def save_safetensors_file(
    tensors: Mapping[str, Any], path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a flat ``name -> tensor`` mapping (a state_dict) as safetensors, atomically.

    ``metadata`` values that are not strings are stored as JSON; ``format: pt`` is added, as
    the Hugging Face libraries expect.  Tensors are written contiguous, from the CPU.
    """
    from safetensors.torch import save_file

    bad = [key for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"{path}: safetensors holds only tensors, but {bad[0]!r} is a "
            f"{type(tensors[bad[0]]).__name__} (save a state_dict, or use a .pt name)"
        )
    plain = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    strings = {"format": "pt", **_metadata_strings(metadata or {})}
    with atomic_output(path) as tmp:
        try:
            save_file(plain, tmp, metadata=strings)
        except (ValueError, RuntimeError) as error:  # e.g. tensors that share memory
            raise WeightsError(f"{path}: cannot write it as safetensors: {_first_line(error)}") from None
    return Path(path)


def read_safetensors_file(
    path: str | os.PathLike[str], *, max_bytes: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file, on the CPU.

    The format holds no code; damaged, truncated and oversized files raise WeightsError.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = _checked_file(path, max_bytes)
    try:
        with safe_open(file, framework="pt") as stream:
            metadata = dict(stream.metadata() or {})
        tensors = load_file(file, device="cpu")
    except Exception as error:  # SafetensorError, OSError, ...: the file is damaged
        raise WeightsError(
            f"{file}: cannot read it as a safetensors file (truncated or corrupt?): {_first_line(error)}"
        ) from None
    return dict(tensors), metadata


# --------------------------------------------------------------------------- torchvision

#: torchvision's DenseNets, as the CLI spells the format.
TORCHVISION_FORMAT = "torchvision"

#: Formats ``cliquegen import-weights --format`` converts; a layout's hint names the command
#: only when its format is here.
IMPORT_FORMATS = (OFFICIAL_FORMAT, TORCHVISION_FORMAT)

#: Names in torchvision's old DenseNet checkpoint files: ``denselayer1.norm.1.weight`` for
#: today's ``denselayer1.norm1.weight`` (torchvision renames them the same way on loading).
_LEGACY_LAYER_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(\w+)$")

_DENSE_MODULE = re.compile(
    r"^block(?P<block>\d+)\.(?:bn(?P<norm1>\d+)_s1|bottleneck_bn(?P<norm2>\d+)_s1"
    r"|bottleneck(?P<conv2>\d+)(?:_s1)?)$"
)
_TRANSITION_MODULE = re.compile(r"^transition(?P<block>\d+)\.(?P<part>bn|conv)$")


def check_torchvision_convertible(spec: Spec) -> None:
    """Raise WeightsError unless the spec is a DenseNet in torchvision's layout."""
    problems = []
    if spec.stem.kind != "imagenet":
        problems.append(f"stem.kind is {spec.stem.kind!r}; torchvision's stem is the imagenet one")
    if spec.head.kind != "last":
        problems.append(f"head.kind is {spec.head.kind!r}; torchvision's head reads the last block (last)")
    if spec.transition.attention:
        problems.append("transition.attention is true; torchvision's transitions have none")
    for block in spec.resolved_blocks():
        at = f"block {block.index + 1}"
        if block.stages != 1:
            problems.append(f"{at}: stages is {block.stages}; a dense block runs Stage I only")
        if not block.bottleneck:
            problems.append(f"{at}: bottleneck is false; torchvision's dense layers have the bottleneck")
        elif block.kernel != 3:
            problems.append(f"{at}: kernel is {block.kernel}; torchvision's conv2 is 3x3")
        if list(block.order) != sorted(block.order):
            problems.append(f"{at}: order is {list(block.order)}; torchvision's order is ascending")
        last = block.index + 1 == len(spec.blocks)
        if not last and block.transit != ("x0", 1):
            problems.append(f"{at}: transit is {list(block.transit)}; torchvision transits [x0, 1]")
        if last and block.feature != ("x0", 1):
            problems.append(f"{at}: feature is {list(block.feature)}; torchvision's head reads [x0, 1]")
    if problems:
        raise WeightsError(
            f"spec {spec.name!r} cannot hold torchvision's DenseNet weights:\n  " + "\n  ".join(problems)
        )


def torchvision_links(spec: Spec) -> list[Link]:
    """Every tensor of the spec's model under torchvision's name (source) and ours (target).

    A dense layer's ``conv1`` reads cat(X0, X1 .. X(l-1)); its weight is our W_0l .. W_(l-1)l
    concatenated along the input channels, in that order (one link, several targets).
    """
    check_torchvision_convertible(spec)
    program = compile_spec(spec).program
    conv1: dict[str, Link] = {}  # by the path of the layer's norm1, which torchvision lists first
    for op in program.ops:
        if op.kind == "update":
            b, layer, _ = op.attrs["node"]
            parts = tuple((path, tuple(program.modules[path].args["shape"])) for path in op.attrs["weights"])
            out, _, kernel, _ = parts[0][1]
            shape = (out, sum(part[1] for _, part in parts), kernel, kernel)
            name = f"features.denseblock{b + 1}.denselayer{layer}.conv1.weight"
            conv1[op.attrs["bn"]] = Link(((name, shape),), parts)
    links = []  # in torchvision's order: conv0, norm0, then norm1, conv1, norm2, conv2 of each layer ...
    for path, decl in program.modules.items():
        if decl.kind in ("weight", "dropout"):  # the W_ij are slices of conv1
            continue
        theirs = _torchvision_module(path)
        for suffix, shape in zip(_TENSORS[decl.kind], _shapes(decl), strict=True):
            links.append(Link(((theirs + suffix, shape),), ((path + suffix, shape),)))
        if path in conv1:
            links.append(conv1[path])
    return links


def _torchvision_module(path: str) -> str:
    """torchvision's module path of one of our module paths (all but the W_ij)."""
    fixed = {"stem.conv": "features.conv0", "stem.bn": "features.norm0", "head.bn": "features.norm5"}
    if path in fixed:
        return fixed[path]
    if path == "classifier":
        return "classifier"
    match = _DENSE_MODULE.match(path)
    if match:
        layer = next(
            (key, int(value)) for key, value in match.groupdict().items() if key != "block" and value
        )
        return f"features.denseblock{match['block']}.denselayer{layer[1]}.{layer[0]}"
    match = _TRANSITION_MODULE.match(path)
    if match:
        return f"features.transition{match['block']}.{'norm' if match['part'] == 'bn' else 'conv'}"
    raise WeightsError(f"internal: no name in torchvision's DenseNet layout for module {path!r}")


def _current_torchvision_names(source: dict[str, Any]) -> dict[str, Any]:
    """``denselayer1.norm.1.weight`` -> ``denselayer1.norm1.weight``; both forms of one key is an error."""
    renamed: dict[str, Any] = {}
    for key, value in source.items():
        match = _LEGACY_LAYER_KEY.match(key)
        name = f"{match[1]}{match[2]}.{match[3]}" if match else key
        if name in renamed:
            raise WeightsError(f"the state_dict holds both {name} and its old name {key}")
        renamed[name] = value
    return renamed


def convert_from_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> Conversion:
    """A torchvision DenseNet state_dict (today's names or the old ``norm.1`` ones, ``module.``
    keys or not) in cliquegen's names, strictly; also says which keys were filled."""
    links = torchvision_links(spec)
    source = _current_torchvision_names(_plain_state_dict(state_dict))
    pairs = [(link.sources[0][0], link.targets[0][0], link.sources[0][1]) for link in links]
    _check_overlap(source, pairs, "torchvision's DenseNet", "a cliquegen state_dict", "import-weights")
    return _convert_links(source, links, spec, ignore=lambda key: False)


def from_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """:func:`convert_from_torchvision`'s state_dict, ready for ``create_model(spec)``."""
    return convert_from_torchvision(state_dict, spec).state_dict


def to_torchvision(state_dict: Mapping[str, Any], spec: Spec) -> dict[str, torch.Tensor]:
    """A cliquegen state_dict in torchvision's names: ``torchvision.models.densenet121()``
    (or the DenseNet the spec describes) loads it with strict=True."""
    links = [Link(link.targets, link.sources) for link in torchvision_links(spec)]
    source = _plain_state_dict(state_dict)
    pairs = [(link.sources[0][0], link.targets[0][0], link.sources[0][1]) for link in links]
    _check_overlap(source, pairs, "the cliquegen", "torchvision's DenseNet", "export-weights")
    return _convert_links(source, links, spec, ignore=lambda key: False).state_dict


#: ``import-weights --format F``: F's state_dict -> cliquegen's names, with what was tolerated.
IMPORTERS: dict[str, Callable[[Mapping[str, Any], Spec], Conversion]] = {
    OFFICIAL_FORMAT: convert_from_official,
    TORCHVISION_FORMAT: convert_from_torchvision,
}
#: ``export-weights --to F``: a cliquegen state_dict -> the file F's code loads.
EXPORTERS: dict[str, Callable[[Mapping[str, Any], Spec], dict[str, Any]]] = {
    OFFICIAL_FORMAT: official_checkpoint,
    TORCHVISION_FORMAT: to_torchvision,
}
