"""Feature maps of a trained clique block: every stage's value of every layer for one image, and
the input image read as ``predict`` or the run's test set prepares it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

from ..checkpoint.info import ModelInfo
from ..compiler.ir import graph_blocks, node_label
from ..compiler.lower import Compiled, compile_spec
from ..compiler.naming import roman
from ..data.folder import read_image
from ..errors import UsageError
from ..spec.model import Spec
from ..train.evaluate import load_test_view
from .weights import _check_block


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
    for j in range(1, graph_blocks(graph)[b].config.layers + 1):
        stages = sorted(s for (bb, jj, s) in graph.nodes if bb == b and jj == j)
        shown = sorted({stages[0], stages[-1]})
        layers.append((j, [(graph.nodes[(b, j, s)]["name"], s) for s in shown]))
    return layers


def feature_maps(
    spec: Spec, model: fx.GraphModule, shown: Input, block: int = 1, classes: list[str] | None = None
) -> FeatureMaps:
    """Stage I and last-stage maps of every layer of ``block`` for one input image."""
    compiled = compile_spec(spec)
    _check_block(block, len(graph_blocks(compiled.graph)))
    if compiled.program.features is None:
        raise UsageError(
            f"analyze features shows a classifier's clique blocks; {spec.name} is an image network"
        )
    info = graph_blocks(compiled.graph)[block - 1]
    if info.config is None:
        raise UsageError(
            f"analyze features shows the layers of a clique block; block {block} of {spec.name} is "
            f"graph `{info.graph.graph_name}`, an explicit graph (--block N picks a clique block)"
        )
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

    data_name, sep, index_text = sample.rpartition(":")
    if not sep or not data_name or not (index_text.isascii() and index_text.isdigit()):
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
