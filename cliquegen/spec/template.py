"""``cliquegen new``: a commented starting spec, so nobody starts from a blank file.

Every key of the format is written out with its value (the built-in default, or the value of
the spec given with ``--like``) and a one-line comment saying what it means, taken from the
models' field descriptions.  The text validates as written; a person deletes what they keep at
its default and edits the rest.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml
from pydantic import BaseModel

from ..errors import UsageError
from .model import NAME_PATTERN, SMALL_INPUT, Spec
from .network import ImageSpec

COMMENT_COLUMN = 36  # where the comments start, so they read as a column
_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}  # plain, they are not text
_INPUT = re.compile(r"([0-9]{1,6})x([0-9]{1,6})(?:x([0-9]{1,3}))?")


def parse_input(text: str) -> tuple[int, int, int]:
    """``HEIGHTxWIDTH[xCHANNELS]`` (``32x32x3``; channels default to 3) as (channels, height, width)."""
    match = _INPUT.fullmatch(text.strip().lower())
    if not match or min(int(n) for n in match.groups("3")) < 1:
        raise UsageError(f"--input {text!r}: give HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3 or 224x224x3")
    height, width, channels = (int(n) for n in match.groups("3"))
    if channels > 4 and min(height, width) <= 4:  # 3x32x32 is channels first
        raise UsageError(f"--input {text!r}: the channels come last: HEIGHTxWIDTHxCHANNELS, e.g. 32x32x3")
    return channels, height, width


def starting_spec(
    name: str,
    like: Spec | ImageSpec | None = None,
    like_label: str | None = None,
    input: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> str:
    """The YAML text of a new spec named ``name``: every key with its value and meaning."""
    if not re.fullmatch(NAME_PATTERN, name) or len(name) > 100:
        raise UsageError(
            f"the name {name!r} must be lower-case letters, digits and '-', starting with a letter "
            "(e.g. my-cliquenet)"
        )
    if like is not None and not isinstance(like, Spec):
        if input is not None or num_classes is not None:
            raise UsageError(
                f"--like {like.name}: an image network has no classes and its copy keeps its input; "
                "edit `input:` in the copy instead of --input"
            )
        return image_variant(name, like, like_label or like.name)
    if like is not None and like.graphs:  # its graphs read best as written, comments included
        if input is not None or num_classes is not None:
            raise UsageError(
                f"--like {like.name}: a spec with graphs is copied as written; edit `input:` and "
                "`num_classes:` in the copy instead of --input and --classes"
            )
        return image_variant(name, like, like_label or like.name)
    data = _full(like) if like is not None else {}
    data["name"] = name
    notes = []
    if like is not None:
        data["description"] = f"a variant of {like.name}"
    else:
        data["description"] = "a clique network"
        data["num_classes"] = 10
    if input is not None:
        channels, height, width = input
        data["input"] = {"channels": channels, "height": height, "width": width}
    if num_classes is not None:
        data["num_classes"] = num_classes
    shape = data.get("input", {"channels": 3, "height": 32, "width": 32})
    if like is None:
        data["blocks"] = _blocks(shape["height"], shape["width"])
        if max(shape["height"], shape["width"]) > SMALL_INPUT:
            data["stem"] = {"kind": "imagenet", "channels": 64}
            notes.append(
                f"stem: imagenet, chosen for the {shape['height']}x{shape['width']} input (the blocks "
                f"start at 1/4 size); kind: cifar keeps the full size"
            )
    lines = [
        f"# {name}: a clique network spec, written by `cliquegen new`"
        + (f" from {like_label}." if like_label else "."),
        "# Every key is written out with its value and what it means; delete the ones you keep at",
        "# their default.  Check it with `cliquegen validate`, count it with `cliquegen summary`.",
        *(f"# Note: {note}" for note in notes),
    ]
    lines += _mapping(Spec, data, like, indent="")
    return "\n".join(lines) + "\n"


def image_variant(name: str, like: Spec | ImageSpec, like_label: str) -> str:
    """An image network's (or a spec with graphs') own text (its comments say what each op and
    graph does) renamed ``name``, with a description saying whose variant it is."""
    text = like.provenance.text
    if like.provenance.hashed == "canonical JSON":  # made in Python: no file, no comments
        text = yaml.safe_dump(json.loads(text), sort_keys=False)
    header = [
        f"# {name}: a copy of {like_label}, written by `cliquegen new`.",
        "# Edit it, check it with `cliquegen validate`, count it with `cliquegen summary`.",
    ]
    body, skipping = [], False
    for line in text.splitlines():
        if skipping and (line[:1].isspace() or not line.strip()):
            continue  # the rest of the description
        skipping = False
        if line.startswith("# yaml-language-server:"):
            continue  # its schema path is relative to where the spec was
        if line.startswith("name:"):
            body.append(f"name: {name}")
        elif line.startswith("description:"):
            body.append(f"description: a variant of {like.name}")
            skipping = True
        else:
            body.append(line)
    if f"name: {name}" not in body:
        raise UsageError(f"--like {like.name}: its file has no top-level `name:` line to rename")
    if not any(line.startswith("description:") for line in body):
        body.insert(body.index(f"name: {name}") + 1, f"description: a variant of {like.name}")
    return "\n".join(header + body) + "\n"


def _full(spec: Spec) -> dict[str, Any]:
    """Every value of ``spec``, written or not, as plain data (blocks as written)."""
    data = spec.model_dump(mode="json")
    data["blocks"] = [block.model_dump(mode="json", exclude_none=True) for block in spec.blocks]
    return data


def _blocks(height: int, width: int) -> list[dict[str, int]]:
    """Three blocks of four 36-channel layers (CliqueNet k=36, T=12), fewer for small inputs:
    each transition halves the size."""
    size = min(height, width) // (4 if max(height, width) > SMALL_INPUT else 1)
    count = max(1, min(3, int(math.log2(max(size, 1))) - 1))
    return [{"layers": 4, "channels": 36} for _ in range(count)]


def _mapping(model: type[BaseModel], data: dict[str, Any], like: Spec | None, indent: str) -> list[str]:
    lines = []
    for key, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True) if not info.is_required() else None
        value = data.get(key, default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
        meaning = info.description or ""
        sub = _model_of(info.annotation)
        if isinstance(value, dict) and sub is not None:
            lines.append(_commented(f"{indent}{key}:", meaning))
            lines += _mapping(sub, value, like, indent + "  ")
            continue
        if key == "blocks":
            lines.append(_commented(f"{indent}{key}:", meaning))
            lines += [f"{indent}  - {_flow(block)}" for block in value]
            continue
        if key == "stages" and like is not None and "stages" not in _written_schedule(like):
            lines.append(_commented(f"{indent}# {key}:", "not written: " + meaning.split("unwritten: ")[-1]))
            continue
        shown = _flow(value)
        if like is not None and not info.is_required() and _flow(_plain(default)) != shown:
            meaning += f" (built-in default: {_flow(_plain(default))})"
        lines.append(_commented(f"{indent}{key}: {shown}", meaning))
    return lines


def _written_schedule(spec: Spec) -> set[str]:
    """The keys ``spec`` writes in ``defaults.schedule``."""
    written = spec.defaults.model_fields_set if "defaults" in spec.model_fields_set else set()
    return spec.defaults.schedule.model_fields_set if "schedule" in written else set()


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _commented(text: str, meaning: str) -> str:
    if not meaning:
        return text
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {meaning}"


def _flow(value: Any) -> str:
    """A value as YAML flow text: ``[x0, last]``, ``{layers: 4, channels: 36}``, ``0.0``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_flow, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9 ._()-]*", value) and value.lower() not in _WORDS
        return value if plain else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):  # YAML 1.1 reads 1e-05 as text: the mantissa needs its point
        mantissa, e, exponent = repr(value).partition("e")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"
    return str(value)
