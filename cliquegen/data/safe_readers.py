"""The CIFAR "python version" files (pickles that arrive as untrusted downloads), read
without an unpickler.

:func:`read_cifar_batch` is a small stack machine over the few opcodes those files use; it
recognises the layout numpy writes for an array and builds the array itself from the raw bytes.
No function, class or constructor named in the file is ever called; every length the file
declares is checked against what is left of the file before anything is allocated, and what
parsing builds is counted against a few times the file's length.  The MATLAB files of SVHN
are checked by :mod:`cliquegen.data.matlab`.
"""

from __future__ import annotations

import math
import pickletools
import sys

import numpy as np

from ..errors import UsageError

# --- CIFAR ---------------------------------------------------------------------------------------
#
# What the genuine files hold (written by Python 2's cPickle, protocol 2): one dict whose keys
# are str; its values are the images (a uint8 numpy array of shape (N, 3072)), lists of int
# labels, lists of file or class names (str), a str and ints.  numpy pickles an array as
#
#   _reconstruct(ndarray, (0,), b"b")                         GLOBAL, args, REDUCE: an empty array
#   BUILD (1, shape, dtype("u1", 0, 1) BUILD (3, "|", None, None, None, -1, -1, 0), False, RAW)
#
# where RAW is a BINSTRING of the pixels.  Python 3 writes the same layout in protocol 2 with
# str as BINUNICODE and bytes as _codecs.encode(TEXT, "latin1") (empty bytes as bytes()), and
# in protocols 3 and 4 bytes as BINBYTES; those layouts are accepted too, the latin-1 step done
# here on the already bounded text.  Python 2's str arrives as bytes, its unicode as str.

PROTOCOLS = (2, 3, 4)
#: Open MARKs at once (a genuine batch nests three: the dict, the array's state, the dtype's).
MAX_MARKS = 8
#: Values on the stack at once (picklers push at most 1,000 items before APPENDS/SETITEMS).
MAX_STACK = 1 << 16
#: Dicts and lists in one file (a batch has one dict and up to four lists).
MAX_CONTAINERS = 64
#: Entries of the dict (a batch has four or five).
MAX_KEYS = 64
MAX_KEY_CHARS = 256
#: The longest tuple of the layout is a dtype's state (8 items; 9 with metadata).
MAX_TUPLE = 9
#: What parsing may allocate, by its own count: this many times the file's length, plus slack.
MEMORY_PER_FILE_BYTE = 4
MEMORY_SLACK = 4 << 20

_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",
}
_DTYPE_STATE = ("|", None, None, None, -1, -1, 0)  # uint8: byte order, subarray, names, fields, ...
_MEMO_ENTRY = 64  # bytes a memo or dict entry costs, roughly
_ARRAY_OBJECT = 112


class _Global:
    """A global the layout names, never imported: only its role is kept."""

    __slots__ = ("role",)

    def __init__(self, role: str):
        self.role = role


class _Dtype:
    """``numpy.dtype("u1", ...)`` as written, confirmed as uint8 once its state is checked."""

    __slots__ = ("checked",)

    def __init__(self) -> None:
        self.checked = False


class _Array:
    """``_reconstruct(ndarray, (0,), b"b")``: the array that BUILD then fills."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


class _Refused(Exception):
    pass


def _show(value: object) -> str:
    """A short, escaped rendering of file text for a message."""
    if isinstance(value, (str, bytes)) and len(value) > 40:
        return repr(value[:40]) + "..."
    if isinstance(value, tuple):
        return "a tuple"
    if isinstance(value, (str, bytes, int, type(None))):
        return repr(value)
    kind = _kind(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _kind(value: object) -> str:
    if isinstance(value, _Global):
        return f"reference to {value.role}"
    if isinstance(value, _Dtype):
        return "dtype"
    if isinstance(value, (_Array, np.ndarray)):
        return "array"
    return type(value).__name__


def read_cifar_batch(data: bytes, source: str) -> dict:
    """The dict of a CIFAR-10/100 python-version batch or meta file, parsed from ``data``.

    Keys are returned as str (latin-1 for bytes keys); values are a read-only uint8 array of
    shape (N, 3072), lists of ints, lists of str/bytes, str, bytes or ints.  Anything else,
    and any damaged or oversized file, raises UsageError("SOURCE: not a CIFAR batch: ...").
    """
    return _CifarParser(data, source).parse()


class _CifarParser:
    def __init__(self, data: bytes, source: str):
        self.data = bytes(data)
        self.view = memoryview(self.data)
        self.source = source
        self.pos = 0
        self.at = 0  # offset of the opcode being run, for messages
        self.protocol = 0
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.containers = 0
        self.list_kinds: dict[int, tuple[list, str]] = {}  # id -> (the list, "int" or "text")
        self.budget = MEMORY_PER_FILE_BYTE * len(self.data) + MEMORY_SLACK
        self.ops = {
            b"}": self.empty_dict,
            b"]": self.empty_list,
            b")": lambda: self.push(()),
            b"(": self.mark,
            b"t": lambda: self.push(self.tuple(self.pop_mark())),
            b"\x85": lambda: self.push(self.tuple(self.pop_n(1))),
            b"\x86": lambda: self.push(self.tuple(self.pop_n(2))),
            b"\x87": lambda: self.push(self.tuple(self.pop_n(3))),
            b"s": lambda: self.set_items(self.pop_n(2)),
            b"u": lambda: self.set_items(self.pop_mark()),
            b"a": lambda: self.append(self.pop_n(1)),
            b"e": lambda: self.append(self.pop_mark()),
            b"q": lambda: self.put(self.uint(1)),
            b"r": lambda: self.put(self.uint(4)),
            b"h": lambda: self.get(self.uint(1)),
            b"j": lambda: self.get(self.uint(4)),
            b"K": lambda: self.push(self.uint(1)),
            b"M": lambda: self.push(self.number(self.uint(2))),
            b"J": lambda: self.push(self.number(self.int_(self.take(4)))),
            b"\x8a": self.long1,
            b"N": lambda: self.push(None),
            b"\x88": lambda: self.push(True),
            b"\x89": lambda: self.push(False),
            b"U": lambda: self.push(self.raw_bytes(self.uint(1))),
            b"T": lambda: self.push(self.raw_bytes(self.int_(self.take(4)))),
            b"X": lambda: self.push(self.text(self.uint(4))),
            b"c": self.global_,
            b"R": self.reduce,
            b"b": self.build,
        }
        protocol3 = {
            b"C": lambda: self.push(self.raw_bytes(self.uint(1))),
            b"B": lambda: self.push(self.raw_bytes(self.uint(4))),
        }
        protocol4 = {
            b"\x8c": lambda: self.push(self.text(self.uint(1))),
            b"\x8d": lambda: self.push(self.text(self.uint(8))),
            b"\x8e": lambda: self.push(self.raw_bytes(self.uint(8))),
            b"\x94": lambda: self.put(len(self.memo)),
            b"\x93": self.stack_global,
            b"\x95": self.frame,
        }
        self.later_ops = {**protocol3, **protocol4}
        self.protocol_ops = (protocol3, protocol4)

    # -- driver ---------------------------------------------------------------------------------

    def parse(self) -> dict:
        try:
            return self.run()
        except _Refused as refusal:
            raise UsageError(f"{self.source}: not a CIFAR batch: {refusal} (at byte {self.at})") from None

    def run(self) -> dict:
        data = self.data
        if len(data) < 2 or data[0] != 0x80:
            raise _Refused("it does not start as a pickle of protocol 2 to 4 (the CIFAR python version)")
        self.protocol = data[1]
        if self.protocol not in PROTOCOLS:
            raise _Refused(
                f"a pickle of protocol {self.protocol}; CIFAR batches use protocol 2 (3 and 4 are read too)"
            )
        if self.protocol >= 3:
            self.ops.update(self.protocol_ops[0])
        if self.protocol >= 4:
            self.ops.update(self.protocol_ops[1])
        self.pos = 2
        ops, size = self.ops, len(data)
        while True:
            self.at = self.pos
            if self.pos >= size:
                raise _Refused("the file ends before the pickle does (truncated?)")
            code = data[self.pos : self.pos + 1]
            self.pos += 1
            if code == b".":
                return self.stop()
            handler = ops.get(code)
            if handler is None:
                raise _Refused(self.unknown(code))
            handler()

    def unknown(self, code: bytes) -> str:
        info = pickletools.code2op.get(code.decode("latin1"))
        name = f"{info.name} ({code!r})" if info else repr(code)
        if code in self.later_ops:
            return f"opcode {name} belongs to a later pickle protocol than the file's {self.protocol}"
        return f"opcode {name} is not used by CIFAR batches"

    def stop(self) -> dict:
        if self.marks:
            raise _Refused("the pickle ends inside an open MARK")
        if len(self.stack) != 1:
            raise _Refused(f"the pickle ends with {len(self.stack)} values on its stack instead of one")
        if self.pos != len(self.data):
            raise _Refused(f"{len(self.data) - self.pos:,} bytes follow the end of the pickle")
        result = self.stack[0]
        if not isinstance(result, dict):
            raise _Refused(f"it holds {_show(result)}, not the dict of a CIFAR batch")
        return result

    # -- reading --------------------------------------------------------------------------------

    def take(self, count: int) -> memoryview:
        """The next ``count`` bytes (a view, nothing copied), checked against what is left."""
        left = len(self.data) - self.pos
        if count > left:
            raise _Refused(f"a field declares {count:,} bytes but only {left:,} are left (truncated?)")
        start = self.pos
        self.pos += count
        return self.view[start : self.pos]

    def frame(self) -> None:  # protocol 4: announces the length of the opcodes that follow
        length = self.uint(8)
        if length > len(self.data) - self.pos:
            raise _Refused(
                f"a frame of {length:,} bytes with only {len(self.data) - self.pos:,} left (truncated?)"
            )

    def uint(self, width: int) -> int:
        return int.from_bytes(self.take(width), "little")

    @staticmethod
    def int_(raw: memoryview) -> int:
        return int.from_bytes(raw, "little", signed=True)

    def number(self, value: int) -> int:
        self.charge(32)  # beyond the small ints that Python shares
        return value

    def long1(self) -> None:
        width = self.uint(1)
        if width > 8:
            raise _Refused(f"an integer of {width} bytes (labels and sizes fit in 8)")
        self.push(self.number(self.int_(self.take(width))))

    def charge(self, count: int) -> None:
        self.budget -= count
        if self.budget < 0:
            raise _Refused(
                f"it builds more than {MEMORY_PER_FILE_BYTE} times its own size in values "
                "(a genuine batch needs about its size)"
            )

    def raw_bytes(self, count: int) -> bytes:
        if count < 0:
            raise _Refused(f"a string of negative length {count}")
        raw = self.take(count)
        self.charge(count + sys.getsizeof(b""))
        return bytes(raw)

    def text(self, count: int) -> str:
        raw = self.take(count)
        try:
            value = str(raw, "utf-8", "surrogatepass")  # at most 4 bytes a character of the file
        except UnicodeDecodeError:
            raise _Refused("a str that is not valid UTF-8") from None
        self.charge(sys.getsizeof(value))
        return value

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + 128)
        if end < 0 and len(self.data) - self.pos < 128:
            raise _Refused("the file ends inside a GLOBAL name (truncated?)")
        if end < 0:
            raise _Refused("a GLOBAL name longer than 128 bytes")
        raw = self.take(end - self.pos)
        self.pos += 1
        return str(raw, "latin1")

    # -- stack ----------------------------------------------------------------------------------

    def push(self, value: object) -> None:
        if len(self.stack) >= MAX_STACK:
            raise _Refused(f"more than {MAX_STACK:,} values on the pickle's stack")
        self.stack.append(value)

    def pop_n(self, count: int) -> list[object]:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) - floor < count:
            raise _Refused("an opcode takes more values than the stack holds")
        items = self.stack[-count:]
        del self.stack[-count:]
        return items

    def mark(self) -> None:
        if len(self.marks) >= MAX_MARKS:
            raise _Refused(f"MARKs nested deeper than {MAX_MARKS}")
        self.marks.append(len(self.stack))

    def pop_mark(self) -> list[object]:
        if not self.marks:
            raise _Refused("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> object:
        floor = self.marks[-1] if self.marks else 0
        if len(self.stack) <= floor:
            raise _Refused("an opcode needs a value that the stack does not hold")
        return self.stack[-1]

    def put(self, index: int) -> None:
        value = self.top()
        self.charge(_MEMO_ENTRY)
        self.memo[index] = value

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise _Refused(f"memo reference {index} points to nothing stored before")
        value = self.memo[index]
        if isinstance(value, _Array) and value.array is not None:
            value = value.array
        self.push(value)

    # -- containers -----------------------------------------------------------------------------

    def new_container(self, value: object) -> None:
        self.containers += 1
        if self.containers > MAX_CONTAINERS:
            raise _Refused(f"more than {MAX_CONTAINERS} lists and dicts (a batch has at most five)")
        self.charge(sys.getsizeof(value))
        self.push(value)

    def empty_dict(self) -> None:
        self.new_container({})

    def empty_list(self) -> None:
        value: list = []
        self.list_kinds[id(value)] = (value, "")
        self.new_container(value)

    def tuple(self, items: list[object]) -> tuple:
        if len(items) > MAX_TUPLE:
            raise _Refused(f"a tuple of {len(items)} items (the layout's longest has {MAX_TUPLE})")
        for item in items:
            if isinstance(item, tuple):
                if any(isinstance(inner, tuple) for inner in item):
                    raise _Refused("tuples nested more than two deep")
            elif isinstance(item, (list, dict, np.ndarray, _Array)):
                raise _Refused(f"a tuple holding {_show(item)}")
        self.charge(sys.getsizeof(items))
        return tuple(items)

    def set_items(self, items: list[object]) -> None:
        target = self.top()
        if not isinstance(target, dict):
            raise _Refused(f"SETITEM on {_show(target)}; only the batch's dict takes items")
        if len(items) % 2:
            raise _Refused("SETITEMS with a key that has no value")
        for key, value in zip(items[::2], items[1::2], strict=True):
            if isinstance(key, bytes):
                key = key.decode("latin1")
            if not isinstance(key, str):
                raise _Refused(f"a dict key that is {_show(key)}, not a str")
            if len(key) > MAX_KEY_CHARS:
                raise _Refused(f"a dict key of {len(key):,} characters")
            if key in target:
                raise _Refused(f"the key {_show(key)} appears twice")
            if len(target) >= MAX_KEYS:
                raise _Refused(f"a dict of more than {MAX_KEYS} entries")
            if not (isinstance(value, (np.ndarray, bytes, str, list)) or type(value) is int):
                raise _Refused(
                    f"the value of {_show(key)} is {_show(value)}; batches hold arrays, lists, str and ints"
                )
            self.charge(_MEMO_ENTRY)
            target[key] = value

    def append(self, items: list[object]) -> None:
        target = self.top()
        if not isinstance(target, list):
            raise _Refused(f"APPEND to {_show(target)}; only lists take items")
        held, kind = self.list_kinds[id(target)]
        for item in items:
            if type(item) is int:
                item_kind = "int"
            elif isinstance(item, (str, bytes)):
                item_kind = "text"
            elif isinstance(item, list):
                raise _Refused("a list inside a list (labels and names are flat lists)")
            else:
                raise _Refused(f"a list item that is {_show(item)}; lists hold ints or names")
            if kind and item_kind != kind:
                raise _Refused("a list that mixes ints and names")
            kind = item_kind
        self.list_kinds[id(target)] = (held, kind)
        self.charge(8 * len(items))
        target.extend(items)

    # -- the numpy layout -----------------------------------------------------------------------

    def global_(self) -> None:
        module = self.line()
        name = self.line()
        self.push(self.resolve(module, name))

    def stack_global(self) -> None:
        module, name = self.pop_n(2)
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused("STACK_GLOBAL without two str names")
        self.push(self.resolve(module, name))

    def resolve(self, module: str, name: str) -> _Global:
        role = _GLOBALS.get((module, name))
        if role is None:
            raise _Refused(
                f"it names {_show(module + '.' + name)}, which CIFAR batches do not use "
                "(nothing in the file was run)"
            )
        return _Global(role)

    def reduce(self) -> None:
        func, args = self.pop_n(2)
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise _Refused(f"REDUCE of {_show(func)} (only numpy's array layout is recognised)")
        role = func.role
        if role == "encode":  # Python 3's bytes in protocol 2: _codecs.encode(text, "latin1")
            if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
                raise _Refused("_codecs.encode other than of one str to latin1")
            self.charge(len(args[0]) + sys.getsizeof(b""))
            try:
                value: object = args[0].encode("latin-1")
            except UnicodeEncodeError:
                raise _Refused("_codecs.encode of text beyond latin-1") from None
        elif role == "bytes":  # Python 3's empty bytes in protocol 2: bytes()
            if args:
                raise _Refused("bytes(...) with arguments (only bytes() is written)")
            value = b""
        elif role == "dtype":
            if (
                len(args) != 3
                or args[0] not in ("u1", b"u1")
                or not _flag(args[1], 0)
                or not _flag(args[2], 1)
            ):
                shown = _show(args[0]) if args else "nothing"
                raise _Refused(f"an array of dtype {shown}; CIFAR images are uint8 ('u1')")
            value = _Dtype()
        elif role == "_reconstruct":
            if (
                len(args) != 3
                or not (isinstance(args[0], _Global) and args[0].role == "ndarray")
                or args[1] != (0,)
                or args[2] not in (b"b", "b")
            ):
                raise _Refused("_reconstruct with other arguments than numpy's (ndarray, (0,), b'b')")
            value = _Array()
        else:
            raise _Refused(f"a call of {role} (only numpy's array layout is recognised)")
        self.push(value)

    def build(self) -> None:
        (state,) = self.pop_n(1)
        target = self.top()
        if isinstance(target, _Dtype) and not target.checked:
            self.check_dtype_state(state)
            target.checked = True
        elif isinstance(target, _Array) and target.array is None:
            target.array = self.make_array(state)
            self.stack[-1] = target.array
        else:
            raise _Refused(f"BUILD of {_show(target)} (only a new array and its dtype take state)")

    @staticmethod
    def check_dtype_state(state: object) -> None:
        # (3, "|", None, None, None, -1, -1, 0); version 4 adds metadata (None here).
        if (
            not isinstance(state, tuple)
            or len(state) not in (8, 9)
            or state[0] != len(state) - 5
            or type(state[0]) is not int
            or tuple(s.decode("latin1") if isinstance(s, bytes) else s for s in state[1:8]) != _DTYPE_STATE
            or any(type(s) is bool for s in state[5:8])
            or (len(state) == 9 and state[8] is not None)
        ):
            raise _Refused("a dtype state other than plain uint8 (fields, subarrays or metadata)")

    def make_array(self, state: object) -> np.ndarray:
        # (1, shape, dtype, fortran_order, raw)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1 or type(state[0]) is not int:
            raise _Refused("an array state other than numpy's (1, shape, dtype, order, bytes)")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype) or not dtype.checked:
            raise _Refused("an array whose dtype is not a checked uint8")
        if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
            raise _Refused("an array shape that is not a tuple of sizes")
        if len(shape) != 2 or shape[1] != 3072:
            raise _Refused(f"an array of shape {shape}; CIFAR images are N x 3072")
        if not _flag(fortran, 0) and not _flag(fortran, 1):
            raise _Refused("an array order flag that is not a bool")
        if not isinstance(raw, bytes):
            raise _Refused(f"array data that is {_show(raw)}, not bytes")
        if math.prod(shape) != len(raw):
            raise _Refused(
                f"an array of shape {shape} ({math.prod(shape):,} bytes) with {len(raw):,} bytes of data"
            )
        self.charge(_ARRAY_OBJECT)
        order = "F" if _flag(fortran, 1) else "C"
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape, order=order)


def _flag(value: object, expected: int) -> bool:
    """``value`` is the bool or int ``expected`` (numpy writes False/True, older numpy 0/1)."""
    return type(value) in (bool, int) and value == expected
