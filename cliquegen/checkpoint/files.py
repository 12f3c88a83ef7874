"""Weight files on disk: the one way cliquegen reads and writes them.

:func:`load_weights_file` never unpickles anything but tensors and plain containers
(``weights_only=True``) and refuses oversized or zip-bomb files before reading; saving is atomic.
Both speak safetensors (a flat ``name -> tensor`` file with string metadata and no code at all):
a file is read as one when its bytes are one, whatever its name, and written as one when its
name ends in ``.safetensors``; :func:`info_metadata` carries a checkpoint's
:class:`~cliquegen.checkpoint.info.ModelInfo` in the metadata, and reading such a file gives a
checkpoint again (``{"model": tensors, "info": ...}``).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._io import MAX_FILE_BYTES, atomic_write, torch_save_atomic
from ..errors import WeightsError
from .info import ModelInfo


def load_weights_file(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> dict[str, Any]:
    """Read a ``torch.save`` file of tensors and plain containers, or a safetensors file (its
    tensors); never runs code from it.

    Missing, empty, oversized (over ``max_bytes``, default :data:`MAX_FILE_BYTES`), corrupt,
    truncated and non-weights files raise WeightsError.
    """
    file = checked_file(path, max_bytes)
    if is_safetensors(file):  # with cliquegen's metadata: a checkpoint's model and info
        tensors, metadata = read_safetensors_file(file, max_bytes=max_bytes)
        info = info_from_metadata(metadata, file)
        return tensors if info is None else {"model": tensors, "info": info.to_dict()}
    check_unpacked_size(file, MAX_FILE_BYTES if max_bytes is None else max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 in the checkpoint"
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(
            f"{file}: refused (nothing in it was run): it is corrupt, or it holds more than tensors "
            f"and plain containers (objects or code that weights-only loading does not allow): "
            f"{first_line(error)}"
        ) from None
    except Exception as error:  # torch reports damage as RuntimeError, EOFError, ValueError ...
        raise WeightsError(
            f"{file}: cannot read it as a PyTorch weights file (truncated or corrupt?): "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{file}: holds a {type(obj).__name__}, not a checkpoint or state_dict")
    check_state_entries(obj, file)
    return dict(obj)


def check_unpacked_size(file: Path, max_bytes: int) -> None:
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
    size = file.stat().st_size
    if unpacked > MAX_ZIP_RATIO * size + ZIP_SLACK:
        raise WeightsError(
            f"{file}: it unpacks to {unpacked:,} bytes, more than {MAX_ZIP_RATIO} times its own "
            f"{size:,} (torch.save stores tensors uncompressed; a compression bomb?)"
        )


#: What a zip-format weights file may unpack to beyond its own size: torch.save stores its
#: entries uncompressed, and float weights deflate by a few percent, not 16 times.
MAX_ZIP_RATIO = 16
ZIP_SLACK = 1 << 20


def check_state_entries(obj: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """The state_dict part of a weights file (its ``model`` or ``state_dict`` mapping, else the
    file's own mapping when it holds tensors) must map str names to tensors only."""
    part, where = next(
        ((obj[k], f"its {k!r} entry") for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)),
        (obj, "it"),
    )
    if part is obj and not any(isinstance(value, torch.Tensor) for value in obj.values()):
        return  # no state_dict in it at all: the caller says what it expected
    for key, value in part.items():
        if not isinstance(key, str):
            raise WeightsError(f"{source}: {where} has the key {key!r}; a state_dict has str names")
        if not isinstance(value, torch.Tensor):
            kind = type(value).__name__
            article = "an" if kind[:1] in "aeiou" else "a"
            raise WeightsError(
                f"{source}: {where} holds {article} {kind} under {key!r}; a state_dict holds tensors"
            )


def first_line(error: BaseException) -> str:
    """The informative line of a torch.load error (not its generic advice)."""
    generic = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(generic)] or lines or [type(error).__name__]
    return lines[0] if len(lines[0]) <= 300 else lines[0][:297] + "..."


def checked_file(path: str | os.PathLike[str], max_bytes: int | None) -> Path:
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
            except RecursionError:  # [[[[...]]]]: no field of the record nests
                raise WeightsError(f"{source}: its metadata {key!r} is nested too deeply") from None
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
    from safetensors.torch import save

    bad = [key for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"{path}: safetensors holds only tensors, but {bad[0]!r} is a "
            f"{type(tensors[bad[0]]).__name__} (save a state_dict, or use a .pt name)"
        )
    plain = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    strings = {"format": "pt", **_metadata_strings(metadata or {})}
    try:  # serialised in memory and written by our atomic writer: a full disk is one clean error
        data = save(plain, metadata=strings)
    except (ValueError, RuntimeError) as error:  # e.g. tensors that share memory
        raise WeightsError(f"{path}: cannot write it as safetensors: {first_line(error)}") from None
    atomic_write(path, data)
    return Path(path)


def read_safetensors_file(
    path: str | os.PathLike[str], *, max_bytes: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file, on the CPU.

    The format holds no code; damaged, truncated and oversized files raise WeightsError.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = checked_file(path, max_bytes)
    try:
        with safe_open(file, framework="pt") as stream:
            metadata = dict(stream.metadata() or {})
        tensors = load_file(file, device="cpu")
    except Exception as error:  # SafetensorError, OSError, ...: the file is damaged
        raise WeightsError(
            f"{file}: cannot read it as a safetensors file (truncated or corrupt?): {first_line(error)}"
        ) from None
    return dict(tensors), metadata
