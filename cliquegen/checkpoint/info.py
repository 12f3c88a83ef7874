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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import WeightsError, dims, printable
from ..spec.limits import MAX_CLASS_NAME
from ..spec.model import NAME_PATTERN, PositiveInt, Spec
from ..spec.yaml_tree import MAX_BYTES


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
    #: What the model was trained for ("classification" or "super-resolution"; None: unrecorded).
    task: str | None = None
    #: Super-resolution: the upscaling factor.
    scale: int | None = None
    #: The pixel values the model takes and gives, [low, high] ([0, 1] for super-resolution).
    pixel_range: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any, source: str | os.PathLike) -> ModelInfo:
        """The record a checkpoint carries, validated like a spec: every field typed and
        bounded; otherwise WeightsError naming the field (``info.mean[0]: ...``)."""
        if not isinstance(value, Mapping):
            kind = type(value).__name__
            raise WeightsError(f"{source}: its 'info' entry is a {kind}, not cliquegen's record")
        try:
            record = _Record.model_validate(dict(value))
        except ValidationError as error:
            raise WeightsError(f"{source}: its 'info' entry is damaged: {_problems(error)}") from None
        except RecursionError:  # pydantic on absurdly nested values
            raise WeightsError(f"{source}: its 'info' entry is damaged: nested too deeply") from None
        fields = record.model_dump()
        fields["overrides"] = record.overrides.model_dump(exclude_none=True)
        return cls(**fields)

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
            "task": self.task,
            "scale": self.scale,
            "pixel_range": self.pixel_range,
        }
        return {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()
            if value is not None
        }


def sha256_text(text: str) -> str:
    """The sha256 of ``text`` in UTF-8 (of the spec file itself, for the loader's text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_info(spec: Spec, **fields: Any) -> ModelInfo:
    """The metadata of a model of ``spec``: its text and sha256 as the loader read them."""
    size = [spec.input.channels, spec.input.height, spec.input.width]
    return ModelInfo(spec.name, spec.provenance.text, spec.provenance.sha256, size, **fields)


def read_info(checkpoint: Mapping[str, Any], source: str | os.PathLike) -> ModelInfo | None:
    """The ModelInfo a cliquegen checkpoint carries, validated; None for a plain state_dict."""
    if checkpoint.get("info") is None:
        return None
    return ModelInfo.from_dict(checkpoint["info"], source)


def check_info_fits(info: ModelInfo, spec: Spec, source: str | os.PathLike) -> None:
    """Refuse (WeightsError, naming both) a record that disagrees with the spec the user gave
    (its ``--num-classes`` already applied): the input size, the number of classes, the
    number of normalisation channels.  The user's spec decides the network."""
    theirs = f"{source} (spec {info.spec_name!r})"
    want = [spec.input.channels, spec.input.height, spec.input.width]
    if info.input_size != want:
        raise WeightsError(
            f"{theirs} was trained on {dims(info.input_size)} inputs, but spec {spec.name!r} takes "
            f"{dims(want)}; use the spec it was trained with"
        )
    if info.classes is not None and len(info.classes) != spec.num_classes:
        named = f"{len(info.classes)} class{'es' if len(info.classes) != 1 else ''}"
        raise WeightsError(
            f"{theirs} names {named}, but spec {spec.name!r} has "
            f"num_classes: {spec.num_classes}; use the spec it was trained with"
        )
    if info.mean is not None and len(info.mean) != spec.input.channels:
        raise WeightsError(
            f"{theirs} records a normalisation of {len(info.mean)} channels, but spec {spec.name!r} "
            f"takes {spec.input.channels}-channel inputs"
        )


def spec_record(info: ModelInfo) -> dict[str, str]:
    """The ``spec`` entry of a checkpoint: what :func:`cliquegen.weights.load_weights` names
    when the weights do not fit another spec."""
    return {"name": info.spec_name, "sha256": info.spec_sha256}


# --- validation of a record read from a file ---------------------------------------------------

#: Bounds of a recorded normalisation, in units of pixels scaled to [0, 1].
MAX_MEAN, MIN_STD, MAX_STD = 1e3, 1e-6, 1e3
#: Tasks a record may name, the largest upscaling factor, the bound of a pixel range's ends.
TASKS = ("classification", "super-resolution")
MAX_SCALE, MAX_PIXEL = 16, 1e6
#: The pixel range of super-resolution models: RGB or grey in [0, 1].
PIXEL_RANGE = (0.0, 1.0)


def _shown_on_a_terminal(name: str) -> str:
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        raise ValueError(f"contains the control or format character {printable(bad)} (U+{ord(bad):04X})")
    return name


def _strict(**config: Any) -> ConfigDict:
    return ConfigDict(strict=True, extra="forbid", **config)


ClassName = Annotated[str, Field(max_length=MAX_CLASS_NAME), AfterValidator(_shown_on_a_terminal)]
Channels = Field(min_length=1, max_length=100_000)
Mean = Annotated[float, Field(ge=-MAX_MEAN, le=MAX_MEAN, allow_inf_nan=False)]
Std = Annotated[float, Field(ge=MIN_STD, le=MAX_STD, allow_inf_nan=False)]
Pixel = Annotated[float, Field(ge=-MAX_PIXEL, le=MAX_PIXEL, allow_inf_nan=False)]


class _Overrides(BaseModel):
    """What ``train --num-classes`` replaced: nothing else of a spec can be overridden."""

    model_config = _strict()
    num_classes: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class _Record(BaseModel):
    model_config = _strict()
    spec_name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    spec_text: Annotated[str, Field(max_length=MAX_BYTES)]
    spec_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    input_size: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]
    classes: Annotated[list[ClassName], Field(max_length=1_000_000)] | None = None
    mean: Annotated[list[Mean], Channels] | None = None
    std: Annotated[list[Std], Channels] | None = None
    data: Annotated[str, Field(max_length=4096)] | None = None
    eval_transform: Literal["resize", "centre-crop"] = "resize"
    overrides: _Overrides = _Overrides()
    task: Literal[TASKS] | None = None
    scale: Annotated[int, Field(ge=1, le=MAX_SCALE)] | None = None
    pixel_range: Annotated[list[Pixel], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _task_whole(self) -> _Record:
        if self.pixel_range is not None and not self.pixel_range[0] < self.pixel_range[1]:
            raise ValueError(f"pixel_range must be [low, high] with low < high, not {self.pixel_range}")
        if self.task == "super-resolution" and self.scale is None:
            raise ValueError("a super-resolution record must carry its scale")
        if self.task == "classification" and self.scale is not None:
            raise ValueError("a classification record carries no scale")
        return self

    @model_validator(mode="after")
    def _normalisation_whole(self) -> _Record:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be recorded together")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} channels but std has {len(self.std)}")
        return self


def _problems(error: ValidationError) -> str:
    """pydantic's errors as ``mean[0]: input should be a finite number (got nan)``, the first three."""
    shown = []
    for item in error.errors(include_url=False)[:3]:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if item["type"] == "extra_forbidden":
            message = (
                "a record may override only num_classes"
                if item["loc"][0] == "overrides"
                else "not a field of cliquegen's record"
            )
        got = item.get("input")
        plain = isinstance(got, (int, float, str, type(None)))
        if plain and item["type"] not in ("missing", "extra_forbidden"):
            text = repr(got)
            message += f" (got {text[:60]}{'...' if len(text) > 60 else ''})"
        shown.append(f"info{where}: {message}" if where else message)
    more = len(error.errors()) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
