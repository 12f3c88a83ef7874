"""Where a spec came from, as the generated header names it: its path and a sha256."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..spec.loader import load_spec
from ..spec.model import Spec


@dataclass(frozen=True)
class SpecOrigin:
    """Where a spec came from, for the header: the path as given (or ``<string>``) and a
    sha256 of its bytes (or, for a Spec object, of its canonical JSON)."""

    path: str
    sha256: str
    hashed: str  # what the sha256 is of

    @classmethod
    def of_bytes(cls, path: str, data: bytes, hashed: str = "file") -> SpecOrigin:
        return cls(path, hashlib.sha256(data).hexdigest(), hashed)

    @classmethod
    def of_spec(cls, spec: Spec, path: str = "<string>") -> SpecOrigin:
        data = spec.model_dump_json().encode()
        return cls(path, hashlib.sha256(data).hexdigest(), "canonical JSON")


def load_with_origin(source: str | os.PathLike[str], *, path: str | None = None) -> tuple[Spec, SpecOrigin]:
    """``load_spec`` that also says where the spec came from (for the generated header)."""
    spec = load_spec(source, path=path)
    if isinstance(source, os.PathLike) or ("\n" not in source and source.lower().endswith((".yaml", ".yml"))):
        return spec, SpecOrigin.of_bytes(
            os.fspath(source) if path is None else path, Path(source).read_bytes()
        )
    return spec, SpecOrigin.of_bytes("<string>" if path is None else path, source.encode(), "text")
