"""What every spec model shares: strict validation, and for a whole spec (a classification
network's :class:`~cliquegen.spec.model.Spec` or an image network's
:class:`~cliquegen.spec.network.ImageSpec`) where it came from and what overrides replaced."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from typing_extensions import Self


Loc = tuple[str | int, ...]

#: Lower-case words joined by ``-``, not ending in one: ``class-`` would build ``class_.py``,
#: the module of the spec ``class`` (a Python keyword).
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$"
PositiveInt = Annotated[int, Field(ge=1, le=100_000)]


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):  # Literal[1, ...] would take True == 1
        raise ValueError("expected a kernel size (1, 3, 5 or 7), got a boolean")
    return value


Kernel = Annotated[Literal[1, 3, 5, 7], BeforeValidator(_not_a_bool)]
BottleneckWidth = Annotated[int, Field(ge=1, le=64)]


class StrictModel(BaseModel):
    """A part of a spec: unknown keys refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True)
class Provenance:
    """Where a spec came from: the path as given (``<string>`` for text), the text itself, and
    the sha256 of its bytes (of the file exactly as ``sha256sum`` reads it).  ``hashed`` says
    what was hashed: ``file``, ``text``, or for a Spec built in Python its ``canonical JSON``."""

    path: str
    text: str
    sha256: str
    hashed: str = "file"

    @classmethod
    def of_text(cls, path: str, text: str, hashed: str = "file") -> Provenance:
        return cls(path, text, hashlib.sha256(text.encode("utf-8")).hexdigest(), hashed)


class SpecBase(StrictModel):
    """A whole spec: its network's fields (in the subclass), its provenance and overrides."""

    #: Top-level fields that :func:`~cliquegen.spec.shipped.apply_overrides` replaced, with
    #: the values the spec had, so that a message can name the override instead of the spec.
    _overridden: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def overridden(self) -> dict[str, Any]:
        """``{"num_classes": 10}`` when an override replaced the spec's ``num_classes: 10``."""
        return dict(self._overridden)

    _provenance: Provenance | None = PrivateAttr(default=None)

    @property
    def provenance(self) -> Provenance:
        """Where the spec came from, as the loader recorded it; a Spec made in Python (or by
        overrides) has its canonical JSON as its text."""
        if self._provenance is not None:
            return self._provenance
        text = self.model_dump_json(indent=2, exclude_unset=True) + "\n"
        return Provenance.of_text("<string>", text, "canonical JSON")

    def with_provenance(self, provenance: Provenance) -> Self:
        """This spec, recording where it came from (the loader's one place to say so)."""
        spec = self.model_copy()
        spec._provenance = provenance
        return spec

    def __eq__(self, other: object) -> bool:
        """Specs are equal when they describe the same network, wherever they came from and
        however they were arrived at (provenance and overrides are not compared)."""
        if not isinstance(other, SpecBase):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = StrictModel.__hash__
