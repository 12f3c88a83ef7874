"""``cliquegen export``: a spec's model, with optional trained weights, as ONNX, a torch.export
program (``.pt2``), TorchScript, or its weights alone as safetensors.

The model is built by ``create_model`` (the FX emitter), loaded with ``strict=True`` and put in
eval mode, so dropout is absent and BatchNorm uses its running statistics in every exported
graph.  The batch dimension stays dynamic in ONNX and torch.export programs, and so do the height
and width of an image network (super-resolution); the metadata carries the checkpoint's task,
scale and pixel range.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_output
from ..checkpoint.files import info_metadata, save_safetensors_file
from ..checkpoint.info import ModelInfo, model_info
from ..checkpoint.load import load_trained
from ..errors import UsageError, import_extra
from ..models import create_model
from ..spec.model import Spec
from ..spec.network import ImageSpec, size_multiple
from ..spec.shipped import resolve_spec

FORMATS = ("onnx", "exported-program", "torchscript", "safetensors")
INPUT_NAME, OUTPUT_NAME = "images", "logits"
#: Said after a successful export in that format.
NOTES = {
    "torchscript": f"note: torch {torch.__version__.split('+')[0]} deprecates TorchScript; "
    "--format exported-program is its successor",
}
#: Name of the JSON file of metadata inside a .pt2 archive or a TorchScript file.
METADATA_FILE = "cliquegen.json"
EXAMPLE_BATCH = 2  # batch 1 would let torch.export specialise the batch dimension to 1
#: The largest input side an exported image network takes.
MAX_SIDE = 2**15


def load_model(spec: str | os.PathLike | Spec, weights: str | os.PathLike | None = None) -> nn.Module:
    """The spec's model in eval mode, with ``weights`` loaded strictly when given.

    ``weights`` is a checkpoint from ``cliquegen train`` (``last.pt``, ``best.pt``) or a plain
    ``state_dict`` saved with ``torch.save``; :func:`cliquegen.weights.load_weights` says what
    is wrong when it does not fit.
    """
    return _load(spec, weights)[0]


def _load(spec: str | os.PathLike | Spec, weights: str | os.PathLike | None) -> tuple[nn.Module, ModelInfo]:
    """The model in eval mode and the metadata to export with it: the checkpoint's, or (for
    a plain state_dict or no weights) the spec's name, text hash and input size."""

    if weights is not None:
        trained = load_trained(spec, weights)
        if trained.info is not None:
            return trained.model, trained.info
        return trained.model, model_info(trained.spec)
    resolved = resolve_spec(spec)
    return create_model(resolved).eval(), model_info(resolved)


def example_input(spec: Spec, batch: int = EXAMPLE_BATCH) -> torch.Tensor:
    return torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width)


def _dynamic_shapes(spec) -> tuple[dict[int, Any]]:
    """The batch is dynamic; so are an image network's height and width (multiples of what its
    wavelet levels need)."""
    shapes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if isinstance(spec, ImageSpec):
        step = size_multiple(spec)
        for axis, name in ((2, "height"), (3, "width")):
            dim = torch.export.Dim(name if step == 1 else f"{name}_over_{step}", min=1, max=MAX_SIDE // step)
            shapes[axis] = dim if step == 1 else step * dim
    return (shapes,)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' notes about optional packages and deprecations we cannot act on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", "The TorchScript type system", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_model(
    spec: str | os.PathLike | Spec,
    fmt: str,
    output: str | os.PathLike,
    weights: str | os.PathLike | None = None,
) -> Path:
    """Write the model of ``spec`` to ``output`` in format ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":  # say which extra is missing before doing any work
        import_extra("onnx", "export", "ONNX export")
        import_extra("onnxscript", "export", "ONNX export")
    model, info = _load(spec, weights)
    if fmt == "safetensors":  # the metadata also carries the spec's text
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        return save_safetensors_file(model.state_dict(), output, metadata=info_metadata(info))
    spec = resolve_spec(spec)
    metadata = info.metadata()
    example = (example_input(spec),)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(output) as tmp, _quiet(), torch.no_grad():  # a failed export leaves no file
        if fmt == "onnx":
            torch.onnx.export(
                model,
                example,
                tmp,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=_dynamic_shapes(spec),
                external_data=False,  # one self-contained file (CliqueNets are far below 2 GB)
                verbose=False,
            )
            _add_onnx_metadata(tmp, metadata)
        elif fmt == "exported-program":
            program = torch.export.export(model, example, dynamic_shapes=_dynamic_shapes(spec))
            # inference IR: eval-mode dropout (an identity) disappears from the graph
            program = program.run_decompositions({})
            archive = io.BytesIO()  # in memory: torch's file writer crashes on a full disk
            torch.export.save(program, archive, extra_files={METADATA_FILE: json.dumps(metadata)})
            tmp.write_bytes(archive.getbuffer())
        else:  # torchscript: deprecated by torch, still loadable with torch.jit.load
            try:
                scripted = torch.jit.script(model)
            except Exception:  # scripting rejects some graphs that tracing handles
                scripted = torch.jit.trace(model, example)
            archive = io.BytesIO()
            torch.jit.save(scripted, archive, _extra_files={METADATA_FILE: json.dumps(metadata)})
            tmp.write_bytes(archive.getbuffer())
    return output


def _add_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    model = onnx.load(path)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata an exported file carries (ONNX metadata_props, or the JSON extra file of a
    torch.export program or TorchScript module), as written: JSON-encoded values."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    extra = {METADATA_FILE: ""}
    if path.suffix == ".pt2":
        torch.export.load(path, extra_files=extra)
    else:
        torch.jit.load(str(path), _extra_files=extra, map_location="cpu")
    return json.loads(extra[METADATA_FILE] or "{}")
