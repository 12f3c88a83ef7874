"""JSON Schema of the spec format, in draft-07 form for editors' YAML language servers."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from .model import Spec
from .network import ImageSpec

DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def spec_schema() -> dict[str, Any]:
    """A spec is a classification network (``Spec``) or, with ``network:``, an image network."""
    schema = TypeAdapter(Spec | ImageSpec).json_schema(ref_template="#/definitions/{model}")
    schema["title"] = "cliquegen spec"
    definitions = schema.pop("$defs", {})
    # draft-07 has no $defs; pydantic's other output (anyOf, const, enum) is draft-07 compatible
    return {"$schema": DRAFT_07, **schema, "definitions": definitions}
