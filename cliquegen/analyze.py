"""``cliquegen analyze``: the paper's two looks inside a trained clique block.

``weights``: per block, the matrix of mean |W_ij| (rows i = X0, X1 .. Xn, columns j = 1 .. n,
None where the block has no W_ij), drawn as a heatmap like DenseNet's Figure 5.  Which
parameter is which W_ij comes from the compiled Program (each update op lists its input values
and, in the same order, the weight it applies to each) and the UpdateGraph (whose edges carry
``weight = (i, j)``), never from parameter names.  A block whose stages share their weights
gets one matrix; a block whose stages have their own W_ij gets one matrix per stage.

Evenness: the Gini coefficient of the block's mean |W_ij| values (every connection that
exists): the mean absolute difference of two strengths over twice their mean.  0 means every
connection is equally strong; it grows towards 1 as a few connections carry the strength (for
m connections at most 1 - 1/m).  Like the normalised entropy it is scale-free and bounded, but
it separates the nearly even spreads that trained clique blocks show: for 12 strengths spread
evenly between 1 and 2 the normalised entropy is 0.99 and the Gini coefficient 0.12; for half
at 1 and half at 2, 0.98 against 0.17.

``features``: the input image, and per layer of a block the mean over channels of
|X_j(1)| (after Stage I) and of |X_j| after the last stage, with the mean, the maximum and the
share of the map's total inside its central half (rows and columns from H/4 to H - H/4, a
quarter of the pixels: 0.25 for an even map).  The values are the model's own: the spec's FX
model, with the given weights, runs through ``torch.fx.Interpreter`` and
:func:`intermediate_values` keeps the nodes named after the Program's values (``b1_x3_s2``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

from .checkpoint import ModelInfo
from .errors import UsageError
from .ir import node_label
from .lower import Compiled, compile_spec
from .naming import roman
from .spec import Spec

# --- weight strengths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightMatrix:
    """Mean |W_ij| of one block (or of one stage of a block with untied weights)."""

    block: int  # from 1
    stages: list[int]  # the stages whose weights the matrix shows (all of them when tied)
    tied: bool  # one W_ij for every stage
    matrix: list[list[float | None]]  # [i][j - 1], i = 0 (X0) .. n
    parameters: list[list[str | None]]  # the state_dict key of each entry
    gini: float

    @property
    def rows(self) -> list[str]:
        return [node_label(i, 0) if i == 0 else f"X{i}" for i in range(len(self.matrix))]

    @property
    def columns(self) -> list[str]:
        return [f"X{j}" for j in range(1, len(self.matrix))]

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "stages": self.stages,
            "rows": self.rows,
            "columns": self.columns,
            "matrix": self.matrix,
            "parameters": self.parameters,
            "gini": self.gini,
        }


def weight_usage(compiled: Compiled) -> dict[int, dict[tuple[int, int], dict[int, str]]]:
    """block (from 0) -> (i, j) -> stage -> the state_dict key of the W_ij that stage applies."""
    graph, program = compiled.graph, compiled.program
    node_of = {data["name"]: node for node, data in graph.nodes(data=True)}
    usage: dict[int, dict[tuple[int, int], dict[int, str]]] = {}
    for op in program.ops:
        if op.kind != "update":
            continue
        target = op.attrs["node"]
        weights = op.attrs["weights"]
        if len(weights) != len(op.inputs):
            raise AssertionError(f"update {op.name!r}: {len(op.inputs)} inputs but {len(weights)} weights")
        for value, path in zip(op.inputs, weights, strict=True):
            i, j = graph.edges[node_of[value], target]["weight"]
            decl = program.modules[path]
            key = path if decl.kind == "weight" else f"{path}.weight"
            usage.setdefault(target[0], {}).setdefault((i, j), {})[target[2]] = key
    return usage


def gini(values: Iterable[float]) -> float:
    """Gini coefficient: mean absolute difference over all pairs / (2 x mean); 0 when even."""
    xs = sorted(values)
    n, total = len(xs), sum(xs)
    if n < 2 or total == 0:
        return 0.0
    # sum_{a,b} |x_a - x_b| = 2 * sum_k (2k - n + 1) x_(k) for sorted x, k from 0
    return sum((2 * k - n + 1) * x for k, x in enumerate(xs)) / (n * total)


def weight_matrices(
    compiled: Compiled, state_dict: Mapping[str, torch.Tensor], block: int | None = None
) -> list[WeightMatrix]:
    """The mean |W_ij| matrices of every block (or of block ``block``, from 1)."""
    blocks = compiled.graph.graph["blocks"]
    _check_block(block, len(blocks))
    usage = weight_usage(compiled)
    matrices = []
    for b, info in enumerate(blocks):
        if block is not None and b + 1 != block:
            continue
        n = info["config"].layers
        pairs = usage.get(b, {})
        stages = sorted({stage for by_stage in pairs.values() for stage in by_stage})
        tied = all(len(set(by_stage.values())) == 1 for by_stage in pairs.values())
        groups = [stages] if tied else [[stage] for stage in stages]
        for group in groups:
            keys: list[list[str | None]] = [[None] * n for _ in range(n + 1)]
            for (i, j), by_stage in pairs.items():
                used = {by_stage[s] for s in group if s in by_stage}
                if used:
                    (keys[i][j - 1],) = used
            matrix = [[None if key is None else _mean_abs(state_dict, key) for key in row] for row in keys]
            present = [v for row in matrix for v in row if v is not None]
            matrices.append(WeightMatrix(b + 1, group, tied, matrix, keys, gini(present)))
    return matrices


def _mean_abs(state_dict: Mapping[str, torch.Tensor], key: str) -> float:
    return float(state_dict[key].detach().double().abs().mean())


def _check_block(block: int | None, count: int) -> None:
    if block is not None and not 1 <= block <= count:
        raise UsageError(f"--block {block}: the spec has blocks 1..{count}")


# --- intermediate values ------------------------------------------------------------------------


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule, names: set[str]):
        super().__init__(module)
        self.names = names
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        if node.name in self.names:
            self.values[node.name] = result.detach().clone()  # later in-place ops must not change it
        return result


def intermediate_values(
    model: fx.GraphModule, images: torch.Tensor, names: Iterable[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a cliquegen FX model on ``images`` and return its output and the values named
    ``names`` (Program value names such as ``b1_x0``, ``b1_x3_s2``), exactly as the model
    computes them.  A model from ``create_model(..., emit="source")`` has the same state_dict:
    load it into ``create_model(spec)`` to use this."""
    if not isinstance(model, fx.GraphModule):
        raise TypeError("intermediate_values needs the FX model: create_model(spec) or build_fx(spec)")
    wanted = set(names)
    missing = wanted - {node.name for node in model.graph.nodes}
    if missing:
        raise KeyError(f"the model has no values named {sorted(missing)}")
    recorder = _Recorder(model, wanted)
    with torch.no_grad():
        output = recorder.run(images)
    return output, recorder.values


# --- feature maps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMap:
    value: str  # Program value name, e.g. b1_x3_s2
    label: str  # X3(2)
    stage: int
    array: Any  # (H, W) numpy array: mean |activation| over channels
    mean: float
    max: float
    central_share: float

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "label": self.label,
            "stage": self.stage,
            "mean": self.mean,
            "max": self.max,
            "central_share": self.central_share,
        }


@dataclass(frozen=True)
class LayerMaps:
    layer: int
    maps: list[FeatureMap]  # after Stage I, then after the last stage (when it differs)


@dataclass(frozen=True)
class FeatureMaps:
    spec: str
    block: int
    image_title: str
    display_image: Any  # (H, W) or (H, W, 3) numpy array in [0, 1]
    column_titles: list[str]
    layers: list[LayerMaps]
    prediction: str  # the predicted class (its name when the checkpoint records the classes)

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "block": self.block,
            "image": self.image_title,
            "prediction": self.prediction,
            "layers": [{"layer": lm.layer, "maps": [m.to_json() for m in lm.maps]} for lm in self.layers],
        }


def central_share(array: torch.Tensor) -> float:
    """Share of a non-negative (H, W) map's total inside rows and columns H/4 .. H - H/4."""
    h, w = array.shape
    total = float(array.sum())
    if total == 0:
        return 0.0
    return float(array[h // 4 : h - h // 4, w // 4 : w - w // 4].sum()) / total


def feature_map(value: str, label: str, stage: int, tensor: torch.Tensor) -> FeatureMap:
    """The mean |activation| over the channels of one image's (1, C, H, W) value, with its stats."""
    array = tensor[0].abs().mean(dim=0).double()
    return FeatureMap(
        value, label, stage, array.numpy(), float(array.mean()), float(array.max()), central_share(array)
    )


def block_layers(compiled: Compiled, block: int) -> list[tuple[int, list[tuple[str, int]]]]:
    """For each layer of ``block`` (from 1): the Program values to show, ``[(name, stage)]``:
    its Stage I value and, when it is another one, its newest value after the last stage."""
    graph = compiled.graph
    b = block - 1
    layers = []
    for j in range(1, graph.graph["blocks"][b]["config"].layers + 1):
        stages = sorted(s for (bb, jj, s) in graph.nodes if bb == b and jj == j)
        shown = sorted({stages[0], stages[-1]})
        layers.append((j, [(graph.nodes[(b, j, s)]["name"], s) for s in shown]))
    return layers


def feature_maps(
    spec: Spec, model: fx.GraphModule, shown: Input, block: int = 1, classes: list[str] | None = None
) -> FeatureMaps:
    """Stage I and last-stage maps of every layer of ``block`` for one input image."""
    compiled = compile_spec(spec)
    _check_block(block, len(compiled.graph.graph["blocks"]))
    layers = block_layers(compiled, block)
    names = [name for _, shown_values in layers for name, _ in shown_values]
    logits, values = intermediate_values(model.eval(), shown.tensor.unsqueeze(0), names)
    later = sorted({stage for _, shown_values in layers for _, stage in shown_values[1:]})
    predicted = int(logits.argmax(dim=1)[0])
    return FeatureMaps(
        spec=spec.name,
        block=block,
        image_title=shown.title,
        display_image=shown.display,
        column_titles=["after Stage I"] + (["after Stage " + " / ".join(map(roman, later))] if later else []),
        layers=[
            LayerMaps(j, [feature_map(name, node_label(j, s), s, values[name]) for name, s in shown_values])
            for j, shown_values in layers
        ],
        prediction=classes[predicted] if classes else str(predicted),
    )


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One image for the model: normalised (C, H, W), a title, and what to show."""

    tensor: torch.Tensor
    title: str
    display: Any  # (H, W) or (H, W, 3) numpy array in [0, 1]


def read_input_image(
    path: str | os.PathLike[str],
    spec: Spec,
    info: ModelInfo | None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> Input:
    """An image file as ``cliquegen predict`` reads it: the spec's channels, brought to its size
    as the run brought its test images, normalised with ``mean`` and ``std`` when given, else
    with the checkpoint's (a plain state_dict records none: pixels stay in [0, 1])."""
    from .data import read_image

    channels = spec.input.channels
    if channels not in (1, 3):
        raise UsageError(f"spec {spec.name!r} takes {channels}-channel inputs; images give 1 or 3")
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such image file")
    for name, given in (("--mean", mean), ("--std", std)):
        if given is not None and len(given) not in (1, channels):
            raise UsageError(f"{name} takes 1 or {channels} values for this spec, got {len(given)}")
    if (mean is None) != (std is None):
        raise UsageError("give --mean and --std together")
    if std is not None and min(std) <= 0:
        raise UsageError(f"--std must be positive, got {std}")
    transform = info.eval_transform if info is not None else "resize"
    pixels = read_image(
        Path(path), "L" if channels == 1 else "RGB", (spec.input.height, spec.input.width), transform
    )
    if mean is None and info is not None and info.mean is not None:
        mean, std = info.mean, info.std
    tensor = (
        pixels
        if mean is None
        else (pixels - torch.tensor(mean).reshape(-1, 1, 1)) / torch.tensor(std).reshape(-1, 1, 1)
    )
    return Input(tensor, Path(path).name, _display(pixels))


def read_sample(sample: str, spec: Spec, info: ModelInfo | None = None) -> Input:
    """``DATA:INDEX``: test image INDEX of a data set (``digits:5``, ``folder:/data/x:12``),
    prepared as the checkpoint's run prepared its test images (``evaluate.load_test_view``)."""
    from .evaluate import load_test_view

    data_name, sep, index_text = sample.rpartition(":")
    if not sep or not data_name or not index_text.isdigit():
        raise UsageError(f"--sample {sample!r}: expected DATA:INDEX, e.g. digits:5")
    data = load_test_view(data_name, spec, info)
    index = int(index_text)
    if index >= len(data.test):
        raise UsageError(f"--sample {sample!r}: the {data.name} test set has images 0..{len(data.test) - 1}")
    image, label = data.test[index]
    return Input(image, f"{data.name} test image {index} (class {data.classes[int(label)]})", _display(image))


def _display(image: torch.Tensor):
    """A (C, H, W) image as an array to show: each channel scaled to [0, 1]."""
    low = image.amin(dim=(1, 2), keepdim=True)
    high = image.amax(dim=(1, 2), keepdim=True)
    shown = (image - low) / (high - low).clamp_min(1e-12)
    return shown[0].numpy() if shown.shape[0] == 1 else shown.permute(1, 2, 0).numpy()


# --- the commands -------------------------------------------------------------------------------


def _check_output(output: str | None, as_json: bool, command: str) -> None:
    """Before any work: something to produce, and a figure that can be written."""
    from .figures import figure_format, require_matplotlib

    if output is None and not as_json:
        raise UsageError("nothing to do: give -o FIG (.png, .svg or .pdf), --json, or both")
    if output is not None:
        figure_format(output)
        require_matplotlib(command)


def analyze_weights(
    spec: str | os.PathLike[str] | Spec,
    weights: str | os.PathLike[str],
    block: int | None = None,
    output: str | None = None,
    as_json: bool = False,
) -> tuple[list[WeightMatrix], Path | None]:
    """``cliquegen analyze weights``: the matrices, and the heatmap file when ``output``."""
    from .evaluate import load_trained
    from .figures import draw_weight_matrices, save_figure

    _check_output(output, as_json, "cliquegen analyze weights")
    trained = load_trained(spec, weights)
    matrices = weight_matrices(compile_spec(trained.spec), trained.model.state_dict(), block)
    if output is None:
        return matrices, None
    title = f"{trained.spec.name}: mean |W_ij| ({Path(weights).name})"
    return matrices, save_figure(draw_weight_matrices(matrices, title), output)


def analyze_features(
    spec: str | os.PathLike[str] | Spec,
    weights: str | os.PathLike[str],
    *,
    image: str | None = None,
    sample: str | None = None,
    block: int = 1,
    output: str | None = None,
    json: bool = False,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> tuple[FeatureMaps, Path | None]:
    """``cliquegen analyze features``: the maps of one image, and the figure file when ``output``."""
    from .evaluate import load_trained
    from .figures import draw_feature_maps, save_figure

    _check_output(output, json, "cliquegen analyze features")
    if (image is None) == (sample is None):
        raise UsageError("give one of --image IMG and --sample DATA:INDEX")
    trained = load_trained(spec, weights)
    if image is not None:
        shown = read_input_image(image, trained.spec, trained.info, mean, std)
    else:
        shown = read_sample(sample, trained.spec, trained.info)
    classes = trained.info.classes if trained.info is not None else None
    maps = feature_maps(trained.spec, trained.model, shown, block, classes)
    if output is None:
        return maps, None
    return maps, save_figure(draw_feature_maps(maps), output)
