"""What a trained model needs beside its weights: the spec it was built from, its classes and
its input normalisation.

``cliquegen train`` stores this :class:`ModelInfo` under the key ``"info"`` of ``last.pt`` and
``best.pt`` (as plain values, so the files still load with ``weights_only=True``); ``eval``,
``predict`` and ``export`` read it back, and ``export`` copies it into the exported file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import WeightsError
from ..spec.model import Spec


@dataclass
class ModelInfo:
    spec_name: str
    spec_text: str
    spec_sha256: str
    input_size: list[int]  # [C, H, W]
    classes: list[str] | None = None
    mean: list[float] | None = None  # per channel, of pixels scaled to [0, 1]
    std: list[float] | None = None
    data: str | None = None
    #: How test images were brought to the input size: "resize" or "centre-crop".
    eval_transform: str = "resize"
    #: Top-level spec fields the run replaced (``--num-classes``); eval and predict apply them too.
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any, source: str | os.PathLike) -> ModelInfo:
        try:
            return cls(**value)
        except TypeError as error:
            raise WeightsError(f"{source}: its 'info' entry is not that of cliquegen: {error}") from None

    def metadata(self) -> dict[str, str]:
        """String key/value pairs for exported files (ONNX metadata_props, .pt2 extra files)."""
        values = {
            "spec_name": self.spec_name,
            "spec_sha256": self.spec_sha256,
            "input_size": self.input_size,
            "classes": self.classes,
            "mean": self.mean,
            "std": self.std,
            "eval_transform": self.eval_transform,
        }
        return {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()
            if value is not None
        }


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_info(spec: Spec, **fields: Any) -> ModelInfo:
    """The metadata of a model of ``spec``: its text and sha256 as the loader read them."""
    size = [spec.input.channels, spec.input.height, spec.input.width]
    return ModelInfo(spec.name, spec.provenance.text, spec.provenance.sha256, size, **fields)


def read_info(checkpoint: dict[str, Any], source: str | os.PathLike) -> ModelInfo | None:
    """The ModelInfo a cliquegen checkpoint carries; None for a plain state_dict."""
    return (
        ModelInfo.from_dict(checkpoint["info"], source) if isinstance(checkpoint.get("info"), dict) else None
    )


def spec_record(info: ModelInfo) -> dict[str, str]:
    """The ``spec`` entry of a checkpoint: what :func:`cliquegen.weights.load_weights` names
    when the weights do not fit another spec."""
    return {"name": info.spec_name, "sha256": info.spec_sha256}
