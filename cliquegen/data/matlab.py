"""A check of MATLAB 5 files (SVHN's distribution format) before ``scipy.io.loadmat`` reads them.

:func:`check_mat_file` walks the variable headers, inflating only the first few hundred bytes
of each compressed variable, and refuses a file whose variables declare more memory than
allowed, disagree with their own sizes, are not plain real numeric arrays, or would inflate to
far more than the file's length (a compression bomb).
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

from ..errors import UsageError

# A MATLAB 5 file: a 128-byte header (text, subsystem offset, version 0x0100, endian mark "IM" or
# "MI"), then data elements, each a tag (uint32 type, uint32 length) and its bytes.  A variable
# is an miMATRIX element, or an miCOMPRESSED element whose zlib data inflates to one.  An
# miMATRIX holds sub-elements: array flags (class in the low byte), dimensions (int32), the
# name (int8) and the real part (a number type that may be narrower than the class).  A
# sub-element of at most 4 bytes may use the "small" form: length and type packed in one
# uint32 and the data in the tag's second half.

MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
_STORED_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # miINT8 ... miUINT64
_NUMERIC_CLASSES = {
    6: ("double", 8), 7: ("single", 4), 8: ("int8", 1), 9: ("uint8", 1), 10: ("int16", 2),
    11: ("uint16", 2), 12: ("int32", 4), 13: ("uint32", 4), 14: ("int64", 8), 15: ("uint64", 8),
}  # fmt: skip
_OTHER_CLASSES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function", 17: "opaque"}
#: Compressed variables may declare at most this many times the file's length (plus the slack);
#: SVHN's pixels compress about 1.3:1, zlib's limit is about 1000:1.
MAX_INFLATION_RATIO = 64
INFLATION_SLACK = 1 << 20
#: Bytes of a variable read (or inflated) to find its header; MATLAB's longest name is 63.
HEADER_PEEK = 512
#: Compressed bytes fed to zlib to get that header before giving up.
HEADER_INPUT = 64 << 10
MAX_VARIABLES = 64
MAX_DIMS = 32  # as loadmat


class _MatVariable(NamedTuple):
    name: str
    dims: tuple[int, ...]
    klass: str
    memory: int  # bytes loadmat's array may take
    inner_bytes: int  # the miMATRIX's length, after its tag


def check_mat_file(path: str | os.PathLike, max_bytes: int) -> None:
    """Refuse (UsageError) a MATLAB 5 file whose variables ``loadmat`` should not read: not
    MATLAB 5, damaged, not plain real numeric arrays, declaring more than ``max_bytes`` in all,
    disagreeing with their own sizes, or whose compressed variables would inflate to more than
    MAX_INFLATION_RATIO times the file's length.  Reads a few hundred bytes a variable."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            _MatWalk(stream, os.fstat(stream.fileno()).st_size, str(path), max_bytes).run()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a MATLAB file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None


class _MatWalk:
    def __init__(self, stream, size: int, source: str, max_bytes: int):
        self.stream, self.size, self.source, self.max_bytes = stream, size, source, max_bytes
        self.endian = "<"
        self.at = 0

    def refuse(self, message: str) -> UsageError:
        return UsageError(f"{self.source}: not a usable MATLAB 5 file: {message} (element at byte {self.at})")

    def run(self) -> None:
        header = self.stream.read(128)
        if len(header) < 128:
            raise self.refuse(f"{len(header)} bytes, shorter than the 128-byte MATLAB 5 header")
        if 0 in header[:4]:
            raise self.refuse("a MATLAB 4 file or no MATLAB file (SVHN files are MATLAB 5)")
        marks = {b"IM": "<", b"MI": ">"}
        if header[126:128] not in marks:
            raise self.refuse("no IM or MI byte-order mark at bytes 126-127")
        self.endian = marks[header[126:128]]
        (version,) = struct.unpack(self.endian + "H", header[124:126])
        if version != 0x0100:
            raise self.refuse(
                f"format version {version >> 8}.{version & 0xFF}, not 1.0 (MATLAB 7.3 files are HDF5)"
            )
        pos, count, declared, inflated = 128, 0, 0, 0
        bound = MAX_INFLATION_RATIO * self.size + INFLATION_SLACK
        while pos < self.size:
            self.at = pos
            if self.size - pos < 8:
                raise self.refuse(
                    f"{self.size - pos} stray bytes where a data element should start (truncated?)"
                )
            self.stream.seek(pos)
            tag = self.stream.read(8)
            kind, length = struct.unpack(self.endian + "II", tag)
            if length == 0 or kind >> 16:
                raise self.refuse("an empty or packed data element at the top level")
            if length > self.size - pos - 8:
                raise self.refuse(
                    f"a variable of {length:,} bytes with only {self.size - pos - 8:,} left (truncated?)"
                )
            count += 1
            if count > MAX_VARIABLES:
                raise self.refuse(f"more than {MAX_VARIABLES} variables (SVHN files have two)")
            if kind == MI_COMPRESSED:
                variable = self.parse_matrix(self.inflate_head(length))
                inflated += 8 + variable.inner_bytes
            elif kind == MI_MATRIX:
                variable = self.parse_matrix(tag + self.stream.read(min(length, HEADER_PEEK)))
            else:
                raise self.refuse(f"a top-level element of MATLAB type {kind}, not a (compressed) matrix")
            declared += variable.memory
            shown = " x ".join(map(str, variable.dims))
            if variable.memory > self.max_bytes:
                raise self.refuse(
                    f"variable {_quoted(variable.name)} declares a {shown} {variable.klass} array "
                    f"({variable.memory:,} bytes), over the {self.max_bytes:,}-byte limit"
                )
            if declared > self.max_bytes:
                raise self.refuse(
                    f"its variables declare {declared:,} bytes in all, over the {self.max_bytes:,}-byte limit"
                )
            if inflated > bound:
                raise self.refuse(
                    f"its compressed variables declare {inflated:,} bytes, more than {MAX_INFLATION_RATIO} "
                    f"times the file's {self.size:,} (a compression bomb?)"
                )
            pos += 8 + length

    def inflate_head(self, length: int) -> bytes:
        """Up to HEADER_PEEK bytes of a compressed element's inflated data, never more."""
        inflater = zlib.decompressobj()
        out = bytearray()
        fed, pending = 0, b""
        try:
            while len(out) < HEADER_PEEK and not inflater.eof:
                if not pending:
                    if fed >= min(length, HEADER_INPUT):
                        break
                    pending = self.stream.read(min(4096, length - fed))
                    fed += len(pending)
                    if not pending:
                        break
                out += inflater.decompress(pending, HEADER_PEEK - len(out))
                pending = inflater.unconsumed_tail
        except zlib.error as error:
            raise self.refuse(f"its compressed data is damaged ({error})") from None
        return bytes(out)

    def tag(self, buffer: bytes, pos: int) -> tuple[int, int, int, bool]:
        """(type, length, where the data starts, small form) of the sub-element at ``pos``."""
        if pos + 8 > len(buffer):
            raise self.cut(buffer)
        (first,) = struct.unpack_from(self.endian + "I", buffer, pos)
        if first >> 16:  # small form: length in the high half, the data in the tag
            if first >> 16 > 4:
                raise self.refuse("a packed sub-element longer than 4 bytes")
            return first & 0xFFFF, first >> 16, pos + 4, True
        (length,) = struct.unpack_from(self.endian + "I", buffer, pos + 4)
        return first, length, pos + 8, False

    def sub(self, buffer: bytes, pos: int, expected: int, what: str) -> tuple[bytes, int]:
        """The data of the sub-element at ``pos`` (of type ``expected``) and where the next starts."""
        kind, length, start, small = self.tag(buffer, pos)
        if kind != expected:
            raise self.refuse(f"the variable's {what} has MATLAB type {kind}, not {expected}")
        if start + length > len(buffer):
            raise self.cut(buffer)
        return buffer[start : start + length], (pos + 8 if small else start + _pad8(length))

    def cut(self, buffer: bytes) -> UsageError:
        if len(buffer) >= HEADER_PEEK:
            return self.refuse(
                f"a variable header longer than {HEADER_PEEK} bytes (no SVHN variable has one)"
            )
        return self.refuse("a variable header cut short (truncated or damaged?)")

    def parse_matrix(self, buffer: bytes) -> _MatVariable:
        """The variable whose miMATRIX tag starts ``buffer`` (its first bytes, inflated)."""
        if len(buffer) < 8:
            raise self.cut(buffer)
        kind, inner = struct.unpack_from(self.endian + "II", buffer, 0)
        if kind != MI_MATRIX:
            raise self.refuse(f"a compressed element that holds MATLAB type {kind}, not a matrix")
        flags_data, pos = self.sub(buffer, 8, MI_UINT32, "array flags")
        if len(flags_data) != 8:
            raise self.refuse("array flags that are not 8 bytes")
        (flags,) = struct.unpack_from(self.endian + "I", flags_data, 0)
        klass = flags & 0xFF
        if klass == 17:
            raise self.refuse("an opaque (object) variable; SVHN files hold numeric arrays")
        dims_data, pos = self.sub(buffer, pos, MI_INT32, "dimensions")
        if len(dims_data) % 4 or not 1 <= len(dims_data) // 4 <= MAX_DIMS:
            raise self.refuse(f"a dimension list of {len(dims_data)} bytes")
        dims = struct.unpack(f"{self.endian}{len(dims_data) // 4}i", dims_data)
        name_data, pos = self.sub(buffer, pos, MI_INT8, "name")
        name = name_data.decode("latin1")
        if klass not in _NUMERIC_CLASSES:
            kind_name = _OTHER_CLASSES.get(klass, f"class-{klass}")
            raise self.refuse(
                f"variable {_quoted(name)} is a {kind_name} array; SVHN files hold numeric arrays"
            )
        if flags & 0x800:
            raise self.refuse(f"variable {_quoted(name)} is complex; SVHN files hold real arrays")
        if any(d < 0 for d in dims):
            raise self.refuse(f"variable {_quoted(name)} has a negative dimension {dims}")
        klass_name, klass_size = _NUMERIC_CLASSES[klass]
        stored, length, start, small = self.tag(buffer, pos)
        if stored not in _STORED_SIZES:
            raise self.refuse(
                f"variable {_quoted(name)} stores its values as MATLAB type {stored}, not numbers"
            )
        values = math.prod(dims)
        memory = values * max(klass_size, _STORED_SIZES[stored])
        if length != values * _STORED_SIZES[stored]:
            if memory > self.max_bytes:  # the clearer of the two complaints
                shown = " x ".join(map(str, dims))
                raise self.refuse(
                    f"variable {_quoted(name)} declares a {shown} {klass_name} array ({memory:,} bytes), "
                    f"over the {self.max_bytes:,}-byte limit"
                )
            raise self.refuse(
                f"variable {_quoted(name)} declares {values:,} {klass_name} values but stores "
                f"{length:,} bytes of {_STORED_SIZES[stored]}-byte numbers"
            )
        end = pos + 8 if small else start + length  # relative to the matrix tag
        if not end - 8 <= inner <= _pad8(end) - 8:
            raise self.refuse(
                f"variable {_quoted(name)}: matrix length {inner:,} disagrees with its parts ({end - 8:,})"
            )
        return _MatVariable(name, dims, klass_name, memory, inner)


def _pad8(count: int) -> int:
    return (count + 7) // 8 * 8


def _quoted(name: str) -> str:
    """A variable name from the file as messages show it: quoted, at most 40 characters."""
    return repr(name[:40]) + ("..." if len(name) > 40 else "")
