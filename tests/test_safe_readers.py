"""The CIFAR pickle parser and the MATLAB 5 pre-check: genuine layouts are read, hostile files
are refused quickly, with bounded memory and a message that names the file."""

from __future__ import annotations

import pickle
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cliquegen.data import safe_readers
from cliquegen.data.matlab import HEADER_PEEK, MAX_VARIABLES, check_mat_file
from cliquegen.data.safe_readers import MAX_CONTAINERS, MAX_MARKS, read_cifar_batch
from cliquegen.errors import UsageError

SOURCE = "cifar/data_batch_1"


# --- a writer of the genuine layout --------------------------------------------------------------
#
# The CIFAR python-version files were written by Python 2's cPickle with protocol 2.  Python 3
# cannot write that layout (it writes bytes as _codecs.encode(...) calls), so this writer
# assembles the opcodes by hand, as cPickle did:
#
#   \x80\x02                                  PROTO 2
#   } q\x01 ( KEY VALUE ... u                 EMPTY_DICT, BINPUT, MARK, pairs, SETITEMS
#                                             (lists: ] q.. ( ITEMS e, APPENDS; both batched
#                                             by 1,000, one item as SETITEM/APPEND)
#   U<len:1>TEXT q..  or  T<len:4>TEXT q..    a Python 2 str (bytes): SHORT_BINSTRING, BINSTRING
#   X<len:4>UTF-8 q..                         a Python 2 unicode: BINUNICODE
#   K<1> / M<2> / J<4> / \x8a<n><n bytes>     ints: BININT1, BININT2, BININT, LONG1
#
# and a numpy array (numpy's __reduce__, then __setstate__ through BUILD):
#
#   cnumpy.core.multiarray\n_reconstruct\n q..        GLOBAL
#   cnumpy\nndarray\n q..  K\x00 \x85 q..  U\x01b q..  \x87 q..  R q..
#                                                     _reconstruct(ndarray, (0,), 'b')
#   ( K\x01  M<N> M\x00\x0c \x86 q..                  MARK, state version 1, shape (N, 3072)
#     cnumpy\ndtype\n q..  U\x02u1 q..  K\x00 K\x01 \x87 q..  R q..   dtype('u1', 0, 1)
#     ( K\x03 U\x01| q.. N N N J\xff\xff\xff\xff J\xff\xff\xff\xff K\x00 t q.. b
#                                                     its state (3, '|', None, None, None,
#                                                     -1, -1, 0), BUILD
#     \x89                                            NEWFALSE: C order
#     T<N*3072:4><the pixels> q..                     BINSTRING: the raw bytes
#   t q.. b                                           TUPLE: the array's state, BUILD


class Py2Writer:
    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self.memo = 1

    def dumps(self, value: object) -> bytes:
        self.value(value)
        self.out += b"."
        return bytes(self.out)

    def put(self) -> None:
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        self.memo += 1

    def value(self, value: object) -> None:
        out = self.out
        if isinstance(value, dict):
            out += b"}"
            self.put()
            self.batched(list(value.items()), b"s", b"u")
        elif isinstance(value, list):
            out += b"]"
            self.put()
            self.batched(value, b"a", b"e")
        elif isinstance(value, bytes):
            out += (
                b"U" + bytes([len(value)]) if len(value) < 256 else b"T" + struct.pack("<i", len(value))
            ) + value
            self.put()
        elif isinstance(value, str):
            text = value.encode("utf-8")
            out += b"X" + struct.pack("<I", len(text)) + text
            self.put()
        elif isinstance(value, np.ndarray):
            self.array(value.shape, value.tobytes())
        elif isinstance(value, int):
            self.int_(value)
        else:
            raise TypeError(value)

    def int_(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)
        elif -(2**31) <= value < 2**31:
            self.out += b"J" + struct.pack("<i", value)
        else:  # LONG1: the fewest little-endian two's-complement bytes
            width = (value + (value < 0)).bit_length() // 8 + 1
            raw = value.to_bytes(width, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def batched(self, items: list, one: bytes, many: bytes) -> None:
        for start in range(0, len(items), 1000):
            batch = items[start : start + 1000]
            if len(batch) > 1:
                self.out += b"("
            for item in batch:
                for part in item if one == b"s" else (item,):
                    self.value(part)
            self.out += one if len(batch) == 1 else many

    def array(
        self,
        shape: tuple,
        raw: bytes,
        descr: bytes = b"u1",
        dtype_state: bytes = b"(K\x03U\x01|N" + b"NN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t",
    ) -> None:
        self.out += b"cnumpy.core.multiarray\n_reconstruct\n"
        self.put()
        self.out += b"cnumpy\nndarray\n"
        self.put()
        self.out += b"K\x00\x85"
        self.put()
        self.out += b"U\x01b"
        self.put()
        self.out += b"\x87"
        self.put()
        self.out += b"R"
        self.put()
        self.out += b"(K\x01"
        for size in shape:
            self.int_(size)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(shape)]
        self.put()
        self.out += b"cnumpy\ndtype\n"
        self.put()
        self.out += b"U" + bytes([len(descr)]) + descr
        self.put()
        self.out += b"K\x00K\x01\x87"
        self.put()
        self.out += b"R"
        self.put()
        self.out += dtype_state
        self.put()
        self.out += b"b\x89T" + struct.pack("<i", len(raw)) + raw
        self.put()
        self.out += b"t"
        self.put()
        self.out += b"b"


def py2_dumps(value: object) -> bytes:
    return Py2Writer().dumps(value)


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 3072), dtype=np.uint8)


def cifar10_batch(count: int = 12) -> dict:
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [k % 10 for k in range(count)],
        b"data": images(count),
        b"filenames": [b"leptodactylus_pentadactylus_s_%06d.png" % k for k in range(count)],
    }


def same(read: dict, written: dict) -> bool:
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in written.items()}
    if read.keys() != keys.keys():
        return False
    for key, value in keys.items():
        got = read[key]
        if isinstance(value, np.ndarray):
            if not (isinstance(got, np.ndarray) and got.dtype == np.uint8 and np.array_equal(got, value)):
                return False
        elif type(got) is not type(value) or got != value:
            return False
    return True


# --- genuine layouts -----------------------------------------------------------------------------


def test_the_python2_writer_writes_what_pickle_reads_back() -> None:
    """The hand-assembled layout is a real pickle: Python's own unpickler (on this trusted data)
    gives the same dict, so the parser is tested against the genuine layout, not a guess."""
    batch = cifar10_batch(1500)  # more than one APPENDS batch
    data = py2_dumps(batch)
    assert data.startswith(b"\x80\x02}q\x01")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"_codecs" not in data
    oracle = pickle.loads(data, encoding="bytes")
    assert oracle.keys() == batch.keys() and np.array_equal(oracle[b"data"], batch[b"data"])
    assert oracle[b"labels"] == batch[b"labels"] and oracle[b"filenames"] == batch[b"filenames"]


def test_a_python2_batch_is_read() -> None:
    batch = cifar10_batch(1500)
    read = read_cifar_batch(py2_dumps(batch), SOURCE)
    assert same(read, batch)
    assert list(read) == ["batch_label", "labels", "data", "filenames"]  # keys as str, in order
    assert read["data"].shape == (1500, 3072) and not read["data"].flags.writeable


def test_python2_meta_files_are_read() -> None:
    names = b"airplane automobile bird cat deer dog frog horse ship truck".split()
    meta = {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072}
    assert same(read_cifar_batch(py2_dumps(meta), "batches.meta"), meta)
    meta100 = {b"fine_label_names": [b"class%d" % k for k in range(100)], b"coarse_label_names": [b"s"] * 20}
    assert same(read_cifar_batch(py2_dumps(meta100), "meta"), meta100)


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_python3_pickles_of_protocols_2_to_4_are_read(protocol: int) -> None:
    """Python 3 writes bytes in protocol 2 as _codecs.encode(text, 'latin1'); the parser does
    that latin-1 step itself.  str names and bytes names both come back as written."""
    batch = {
        "data": images(5),
        "labels": [3, 1, 4, 1, 5],
        "filenames": [f"{k}.png" for k in range(5)],
        "raw_names": [bytes([k, 200, 255]) for k in range(5)],
        "batch_label": b"\x00\xff binary label",
        "count": 70000,
    }
    assert same(read_cifar_batch(pickle.dumps(batch, protocol=protocol), SOURCE), batch)


def test_empty_bytes_values_are_read() -> None:
    """Python 3 writes empty bytes in protocol 2 as bytes() (a REDUCE of the builtins' bytes):
    a genuine file, not an attack; also an empty batch, whose pixels are empty bytes."""
    batch = {"batch_label": b"", "data": np.zeros((0, 3072), np.uint8), "labels": []}
    data = pickle.dumps(batch, protocol=2)
    assert b"c__builtin__\nbytes\n" in data
    assert same(read_cifar_batch(data, SOURCE), batch)
    py2 = {b"batch_label": b"", b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    assert same(read_cifar_batch(py2_dumps(py2), SOURCE), py2)


def test_large_ints_and_fortran_order_are_read() -> None:
    pixels = images(3)
    batch = {"data": np.asfortranarray(pixels), "labels": [0, 255, 256, 65535, 65536, 2**31, -(2**40), 2**62]}
    read = read_cifar_batch(pickle.dumps(batch, protocol=2), SOURCE)
    assert np.array_equal(read["data"], pixels) and read["labels"] == batch["labels"]
    assert read_cifar_batch(py2_dumps({b"labels": batch["labels"]}), SOURCE)["labels"] == batch["labels"]


batches = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.binary(max_size=300),
        st.text(max_size=20),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
        st.lists(st.binary(max_size=20), max_size=30),
        st.lists(st.text(max_size=8), max_size=30),
        st.integers(0, 3).map(lambda n: images(n, seed=n)),
    ),
    max_size=6,
)


@given(batches, st.sampled_from(["py2", 2, 3, 4]))
def test_every_batch_shaped_dict_reads_back_as_written(batch: dict, layout: object) -> None:
    data = py2_dumps(batch) if layout == "py2" else pickle.dumps(batch, protocol=layout)
    assert same(read_cifar_batch(data, SOURCE), batch)


@settings(max_examples=150)
@given(st.data())
def test_damaged_batches_are_read_or_refused_never_crash(data: st.DataObject) -> None:
    """Any byte changed, dropped or inserted: the parser returns a dict or a UsageError."""
    genuine = bytearray(
        py2_dumps(cifar10_batch(2))
        if data.draw(st.booleans())
        else pickle.dumps(cifar10_batch(2), protocol=2)
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(genuine) - 1))
        action = data.draw(st.sampled_from(["set", "drop", "insert"]))
        if action == "set":
            genuine[at] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del genuine[at]
        else:
            genuine.insert(at, data.draw(st.integers(0, 255)))
    try:
        assert isinstance(read_cifar_batch(bytes(genuine), SOURCE), dict)
    except UsageError as error:
        assert str(error).startswith(f"{SOURCE}: not a CIFAR batch: ")


# --- hostile batches -----------------------------------------------------------------------------


def refused(data: bytes, match: str, *, memory: int = 2 << 20) -> str:
    """Assert ``data`` is refused with ``match`` in its message, within a second and ``memory``
    bytes of allocations beyond the file itself; return the message."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UsageError) as caught:
            read_cifar_batch(data, SOURCE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: not a CIFAR batch: "), message
    assert match in message, message
    assert elapsed < 1.0, (elapsed, message)
    assert peak < memory, (peak, message)
    return message


def pickle2(body: bytes) -> bytes:
    """A protocol-2 pickle of the dict {"k": BODY's value}."""
    return b"\x80\x02}(X\x01\x00\x00\x00k" + body + b"u."


def test_the_dtype_object_field_trick_is_refused() -> None:
    """numpy.dtype with a state that adds an object field (so a scalar or array built on it
    reads a pointer from file bytes): neither the other descriptor nor the fields get in."""
    fields = b"}(X\x01\x00\x00\x00a" + b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R" + b"K\x00\x86u"
    state = b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00at" + fields + b"K\x08K\x01K?tb"
    scalar = b"cnumpy.core.multiarray\nscalar\n"
    as_void = b"cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R" + state
    refused(
        pickle2(scalar + as_void + b"C\x08" + b"\x41" * 8 + b"\x86R"), "names 'numpy.core.multiarray.scalar'"
    )
    refused(pickle2(as_void), "dtype 'V8'")
    refused(pickle2(b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R" + state), "dtype 'O8'")
    int_fields = b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00at}(X\x01\x00\x00\x00aK\x00uK\x08K\x01K?tb"
    refused(
        pickle2(b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R" + int_fields), "a tuple holding a dict"
    )
    names_only = b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00atNK\x08K\x01K?tb"
    refused(pickle2(b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R" + names_only), "plain uint8")


def test_a_huge_reconstruct_shape_is_refused_without_allocating() -> None:
    """_reconstruct(ndarray, (10**9,), b"b") allocates 1 GB in numpy; here it is not numpy's
    layout.  A BUILD state that declares a huge shape over a few bytes is refused as well."""
    reconstruct = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    data = pickle2(reconstruct + b"J\x00\xca\x9a\x3b\x85U\x01b\x87R")
    assert len(data) < 411
    refused(data, "_reconstruct with other arguments")
    writer = Py2Writer()
    writer.out += b"}(U\x04data"
    writer.array((10**6, 3072), b"\x00" * 64)
    refused(bytes(writer.out + b"u."), "(3,072,000,000 bytes) with 64 bytes of data")


def test_nested_label_lists_are_refused() -> None:
    nested = pickle2(b"]" * 50_000 + b"a" * 49_999)  # 100 KB: [[[[...]]]]
    refused(nested, f"more than {MAX_CONTAINERS} lists and dicts")
    refused(pickle2(b"](]]e"), "a list inside a list")
    refused(pickle2(b"](K\x01X\x01\x00\x00\x00ae"), "mixes ints and names")
    refused(pickle2(b"](Ne"), "a list item that is None")


def test_codecs_encode_is_only_latin1_of_text_done_here() -> None:
    """A 73 KB _codecs.encode with a slow codec burnt 50 s in the unpickler: only latin1 is
    recognised, and the parser encodes the (already length-checked) text itself."""
    text = ("\u00e9" * 36_000).encode("utf-8")
    encode = b"c_codecs\nencode\nX" + struct.pack("<I", len(text)) + text
    refused(pickle2(encode + b"X\x08\x00\x00\x00punycode\x86R"), "other than of one str to latin1")
    wide = ("\u4e00" * 20_000).encode("utf-8")
    refused(
        pickle2(
            b"c_codecs\nencode\nX" + struct.pack("<I", len(wide)) + wide + b"X\x06\x00\x00\x00latin1\x86R"
        ),
        "beyond latin-1",
    )
    refused(pickle2(b"c_codecs\nencode\nK\x01X\x06\x00\x00\x00latin1\x86R"), "other than of one str")
    read = read_cifar_batch(pickle2(encode + b"X\x06\x00\x00\x00latin1\x86R"), SOURCE)
    assert read == {"k": b"\xe9" * 36_000}


def test_bad_memo_references_are_refused() -> None:
    refused(pickle2(b"h\x07"), "memo reference 7 points to nothing")
    refused(pickle2(b"j\xff\xff\xff\xff"), "memo reference 4294967295")
    refused(b"\x80\x02q\x00.", "needs a value")


def test_every_truncation_of_a_genuine_batch_is_refused() -> None:
    for data in (py2_dumps(cifar10_batch(1)), pickle.dumps(cifar10_batch(1), protocol=2)):
        raw = cifar10_batch(1)[b"data"].tobytes()
        at = data.find(raw[:64])  # Python 3 writes the pixels as UTF-8 text
        pixels = at if at >= 0 else data.index(raw.decode("latin1").encode("utf-8")[:64])
        ends = [*range(pixels + 1), *range(pixels + 3072 - 16, len(data))]  # not every pixel
        for end in ends:
            with pytest.raises(UsageError, match=f"^{SOURCE}: not a CIFAR batch: "):
                read_cifar_batch(data[:end], SOURCE)
    refused(py2_dumps(cifar10_batch(2))[:-900], "(truncated?)")


@pytest.mark.parametrize(
    ("opcode", "name"),
    [(b"i", "INST"), (b"0", "POP"), (b"\x81", "NEWOBJ"), (b"\xff", "b'\\xff'"), (b"P", "PERSID")],
)
def test_unknown_opcodes_are_refused(opcode: bytes, name: str) -> None:
    refused(pickle2(b"K\x01" + opcode), f"opcode {name}")


def test_later_protocol_opcodes_in_a_protocol_2_file_are_refused() -> None:
    refused(pickle2(b"C\x01a"), "belongs to a later pickle protocol")


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b"cnumpy.core.multiarray\nscalar\n", "numpy.core.multiarray.scalar"),
        (b"cnumpy\nfrombuffer\n", "numpy.frombuffer"),
        (b"c__builtin__\neval\n", "__builtin__.eval"),
        (b"cnumpy.core.multiarray\n_reconstruct" + b"x" * 200 + b"\n", "longer than 128 bytes"),
    ],
)
def test_other_globals_are_refused_without_import(body: bytes, name: str) -> None:
    refused(pickle2(body), name)


def test_a_code_running_pickle_is_refused() -> None:
    message = refused(pickle.dumps({"data": Exploit()}, protocol=2), "posix.system")
    assert "nothing in the file was run" in message
    refused(pickle.dumps({"data": Exploit()}, protocol=4), "posix.system")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.zeros((2, 3072), np.float32), "dtype 'f4'"),
        (np.zeros(5, np.int64), "dtype 'i8'"),
        (np.zeros((2, 3072), np.int8), "dtype 'i1'"),
        (np.zeros((2, 3, 1024), np.uint8), "an array of shape (2, 3, 1024)"),
        (np.zeros((2, 32), np.uint8), "an array of shape (2, 32)"),
        (np.zeros((2, 3072), dtype=[("r", "u1"), ("g", "u1")]), "dtype 'V2'"),
    ],
)
def test_arrays_other_than_n_by_3072_uint8_are_refused(value: np.ndarray, match: str) -> None:
    refused(pickle.dumps({"data": value}, protocol=2), match)


def test_a_shape_that_disagrees_with_its_bytes_is_refused() -> None:
    writer = Py2Writer()
    writer.out += b"}(U\x04data"
    writer.array((2, 3072), b"\x00" * 6143)
    refused(bytes(writer.out + b"u."), "(6,144 bytes) with 6,143 bytes")


def test_nesting_bombs_are_refused() -> None:
    refused(pickle2(b"(" * 100_000), f"MARKs nested deeper than {MAX_MARKS}")
    refused(pickle2(b"K\x00" + b"\x85" * 100_000), "tuples nested more than two deep")
    refused(pickle2(b"N" * 100_000), "more than 65,536 values")
    refused(pickle2(b"(" + b"N" * 10 + b"t"), "a tuple of 10 items")
    refused(pickle2(b"}"), "the value of 'k' is a dict")


def test_huge_declared_lengths_are_refused_before_allocating() -> None:
    refused(pickle2(b"T\xff\xff\xff\x7f" + b"x" * 100), "declares 2,147,483,647 bytes but only")
    refused(pickle2(b"T\x00\x00\x00\x80"), "negative length")
    refused(pickle2(b"X\xff\xff\xff\xff"), "declares 4,294,967,295 bytes")
    refused(pickle2(b"\x8a\xff" + b"\x01" * 255), "an integer of 255 bytes")
    protocol4 = b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"}."
    refused(protocol4, "a frame of 9,223,372,036,854,775,808 bytes")
    refused(
        b"\x80\x04}(\x8c\x01k\x8e" + struct.pack("<Q", 2**64 - 1) + b"u.",
        "declares 18,446,744,073,709,551,615",
    )


def test_memory_beyond_a_few_times_the_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of two-byte names costs about 11 times its 4 bytes of file each: refused once the
    parser's count passes 4 times the file's length (and the slack, set to 0 here to keep the
    file small), before memory runs away."""
    batch = b"(" + b"U\x02ab" * 1000 + b"e"
    fits = b"\x80\x02}(X\x01\x00\x00\x00k]" + batch * 20 + b"u."
    assert len(read_cifar_batch(fits, SOURCE)["k"]) == 20_000  # within the 4 MiB slack
    monkeypatch.setattr(safe_readers, "MEMORY_SLACK", 0)
    message = refused(fits, "more than 4 times its own size", memory=5 * len(fits))
    assert int(message.rsplit("at byte ", 1)[1].rstrip(")")) < len(fits) // 2


def test_other_refusals_name_the_file_and_the_reason() -> None:
    refused(pickle.dumps([1, 2], protocol=2), "it holds a list, not the dict")
    refused(pickle.dumps({"a": 1}, protocol=5), "protocol 5")
    refused(pickle.dumps({"a": 1}, protocol=0), "does not start as a pickle")
    refused(pickle.dumps({"a": 1}, protocol=2) + b"\x00", "1 bytes follow the end")
    refused(pickle.dumps({"a": True}, protocol=2), "the value of 'a' is True")
    refused(pickle.dumps({"a": None}, protocol=2), "the value of 'a' is None")
    refused(pickle.dumps({1: 2}, protocol=2), "a dict key that is 1")
    refused(pickle.dumps({"a": (1, 2)}, protocol=2), "the value of 'a' is a tuple")
    refused(pickle.dumps({"a": {"b": 1}}, protocol=2), "is a dict")
    refused(b"\x80\x02}(X\x01\x00\x00\x00aK\x01U\x01aK\x02u.", "the key 'a' appears twice")
    refused(pickle.dumps({f"k{i}": i for i in range(65)}, protocol=2), "more than 64 entries")
    refused(b"\x80\x02}(K\x01.", "ends inside an open MARK")
    refused(b"\x80\x02}}.", "2 values on its stack")


# --- MATLAB 5 ------------------------------------------------------------------------------------


@pytest.fixture
def scipy_io():
    """scipy (an optional dependency) writes and reads back the genuine files."""
    return pytest.importorskip("scipy.io")


MB = 1 << 20


def svhn_arrays(count: int, label_dtype=np.uint8) -> dict:
    digits = np.arange(count) % 10
    labels = np.where(digits == 0, 10, digits).astype(label_dtype).reshape(-1, 1)
    X = np.random.default_rng(0).integers(0, 60, size=(32, 32, 3, count), dtype=np.uint8)
    return {"X": X, "y": labels}


def mat_header(endian: str = "<", version: int = 0x0100) -> bytes:
    text = b"MATLAB 5.0 MAT-file, written by the cliquegen tests".ljust(116, b" ")
    return text + b"\x00" * 8 + struct.pack(endian + "H", version) + (b"IM" if endian == "<" else b"MI")


def element(kind: int, payload: bytes, endian: str = "<", length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(endian + "II", kind, size) + payload + b"\x00" * (-len(payload) % 8)


def matrix(
    name: bytes,
    dims: tuple,
    klass: int,
    stored: int,
    data: bytes,
    endian: str = "<",
    *,
    declared: int | None = None,
    flags: int = 0,
    extra: int = 0,
) -> bytes:
    """An miMATRIX: flags (class), dimensions, name, real part; ``declared`` overrides the real
    part's length (its data stays ``data``), ``extra`` adds to the matrix's own length."""
    body = (
        element(6, struct.pack(endian + "II", klass | flags, 0), endian)
        + element(5, struct.pack(f"{endian}{len(dims)}i", *dims), endian)
        + element(1, name, endian)
        + element(stored, data, endian, declared)
    )
    length = (
        len(body)
        if declared is None
        else len(body) - len(data) - (-len(data) % 8) + declared + (-declared % 8)
    )
    return struct.pack(endian + "II", 14, length + extra) + body


def compressed(matrix_bytes: bytes, endian: str = "<") -> bytes:
    packed = zlib.compress(matrix_bytes)
    return struct.pack(endian + "II", 15, len(packed)) + packed


def write(path: Path, *elements: bytes, endian: str = "<", version: int = 0x0100) -> Path:
    path.write_bytes(mat_header(endian, version) + b"".join(elements))
    return path


def mat_refused(path: Path, match: str, max_bytes: int = 2 << 30, memory: int = 512 << 10) -> str:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UsageError) as caught:
            check_mat_file(path, max_bytes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert message.startswith(f"{path}: not a usable MATLAB 5 file: "), message
    assert match in message, message
    assert elapsed < 1.0 and peak < memory, (elapsed, peak, message)
    return message


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.float64])
def test_files_written_by_savemat_pass(tmp_path: Path, compress: bool, label_dtype, scipy_io) -> None:
    arrays = svhn_arrays(20, label_dtype)
    path = tmp_path / "train_32x32.mat"
    scipy_io.savemat(path, arrays, do_compression=compress)
    check_mat_file(path, 64 * 3072 + 20 * 8)
    loaded = scipy_io.loadmat(path)
    assert np.array_equal(loaded["X"], arrays["X"]) and np.array_equal(loaded["y"], arrays["y"])
    mat_refused(path, "over the 1,000-byte limit", max_bytes=1000)  # X alone is 61,440 bytes


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("packed", [True, False])
def test_matlab_style_files_pass_in_either_byte_order(
    tmp_path: Path, endian: str, packed: bool, scipy_io
) -> None:
    """MATLAB stores a double array of small whole numbers as uint8 (miUINT8) and writes in
    either byte order; this writer's files are the ones scipy reads back."""
    arrays = svhn_arrays(6)
    X = matrix(b"X", (32, 32, 3, 6), 9, 2, arrays["X"].tobytes(order="F"), endian)
    y = matrix(b"y", (6, 1), 6, 2, arrays["y"].tobytes(order="F"), endian)  # class double, uint8 data
    parts = (compressed(X, endian), compressed(y, endian)) if packed else (X, y)
    path = write(tmp_path / "m.mat", *parts, endian=endian)
    check_mat_file(path, 6 * 3072 + 6 * 8)
    loaded = scipy_io.loadmat(path)
    assert np.array_equal(loaded["X"], arrays["X"]) and np.array_equal(loaded["y"], arrays["y"])
    mat_refused(
        path, "declare 18,480 bytes in all, over the 18,479-byte limit", max_bytes=6 * 3072 + 6 * 8 - 1
    )


def test_a_few_kb_compressed_file_declaring_a_huge_array_is_refused_before_inflating(tmp_path: Path) -> None:
    """3 GB declared over 4 KB of zeros: loadmat would start inflating (and allocate) 3 GB."""
    dims = (32, 32, 3, 1_000_000)
    bomb = matrix(b"X", dims, 9, 2, b"\x00" * 4096, declared=3_072_000_000)
    path = write(tmp_path / "bomb.mat", compressed(bomb))
    assert path.stat().st_size < 8192
    mat_refused(
        path,
        "variable 'X' declares a 32 x 32 x 3 x 1000000 uint8 array (3,072,000,000 bytes)",
        memory=64 << 10,
    )


def test_an_honest_compression_bomb_is_refused_by_the_ratio(tmp_path: Path) -> None:
    """8 MB of zeros in about 8 KB: under any byte limit, but over 64 times the file."""
    count = 8 * MB // 3072
    bomb = matrix(b"X", (32, 32, 3, count), 9, 2, bytes(count * 3072))
    path = write(tmp_path / "bomb.mat", compressed(bomb))
    assert path.stat().st_size < 16 << 10
    mat_refused(path, "more than 64 times the file's", memory=64 << 10)


def test_sizes_that_disagree_with_the_class_are_refused(tmp_path: Path) -> None:
    short = matrix(b"X", (32, 32, 3, 10), 9, 2, b"\x00" * 100)
    mat_refused(
        write(tmp_path / "a.mat", compressed(short)), "declares 30,720 uint8 values but stores 100 bytes"
    )
    wide = matrix(b"y", (10, 1), 6, 9, b"\x00" * 40)  # 10 doubles in 40 bytes
    mat_refused(
        write(tmp_path / "b.mat", wide), "declares 10 double values but stores 40 bytes of 8-byte numbers"
    )
    longer = matrix(b"y", (4, 1), 9, 2, b"\x01" * 4, extra=4096)
    mat_refused(
        write(tmp_path / "c.mat", compressed(longer)),
        "matrix length 4,160 disagrees with its parts (60)",
    )
    text = matrix(b"y", (4, 1), 9, 16, b"\x01" * 4)
    mat_refused(write(tmp_path / "d.mat", text), "stores its values as MATLAB type 16")


def test_variables_that_are_not_real_numeric_arrays_are_refused(tmp_path: Path) -> None:
    cell = matrix(b"X", (1, 1), 1, 2, b"\x00")
    mat_refused(write(tmp_path / "a.mat", compressed(cell)), "variable 'X' is a cell array")
    complex_ = matrix(b"X", (1, 1), 6, 9, b"\x00" * 8, flags=0x800)
    mat_refused(write(tmp_path / "b.mat", complex_), "variable 'X' is complex")
    opaque = struct.pack("<II", 14, 16) + element(6, struct.pack("<II", 17, 0))
    mat_refused(write(tmp_path / "c.mat", opaque), "an opaque (object) variable")
    mat_refused(write(tmp_path / "d.mat", element(9, b"\x00" * 8)), "a top-level element of MATLAB type 9")


def test_damaged_and_foreign_files_are_refused(tmp_path: Path, scipy_io) -> None:
    good = tmp_path / "good.mat"
    scipy_io.savemat(good, svhn_arrays(4), do_compression=True)
    data = good.read_bytes()
    cut = tmp_path / "cut.mat"
    cut.write_bytes(data[:-10])
    mat_refused(cut, "with only")
    cut.write_bytes(data[: -len(data) + 200])
    mat_refused(cut, "(truncated?)")
    cut.write_bytes(data + b"\x00\x00\x00")
    mat_refused(cut, "3 stray bytes")
    (tmp_path / "short.mat").write_bytes(data[:100])
    mat_refused(tmp_path / "short.mat", "shorter than the 128-byte MATLAB 5 header")
    mat_refused(write(tmp_path / "v73.mat", version=0x0200), "format version 2.0")
    (tmp_path / "v4.mat").write_bytes(b"\x00" * 200)
    mat_refused(tmp_path / "v4.mat", "a MATLAB 4 file")
    (tmp_path / "mark.mat").write_bytes(data[:126] + b"XX" + data[128:])
    mat_refused(tmp_path / "mark.mat", "no IM or MI byte-order mark")
    broken = struct.pack("<II", 15, 64) + b"\x78\x9c" + b"\xff" * 62
    mat_refused(write(tmp_path / "zlib.mat", broken), "its compressed data is damaged")
    not_matrix = struct.pack("<II", 15, 0) + b""
    mat_refused(write(tmp_path / "empty.mat", not_matrix + b"\x00" * 8), "an empty or packed data element")
    inner = compressed(element(9, b"\x00" * 8))
    mat_refused(write(tmp_path / "inner.mat", inner), "holds MATLAB type 9, not a matrix")
    with pytest.raises(UsageError, match="no such file"):
        check_mat_file(tmp_path / "missing.mat", MB)


def test_many_variables_and_long_headers_are_refused(tmp_path: Path) -> None:
    tiny = compressed(matrix(b"v", (1, 1), 9, 2, b"\x01"))
    many = write(tmp_path / "many.mat", *[tiny] * (MAX_VARIABLES + 1))
    mat_refused(many, f"more than {MAX_VARIABLES} variables")
    check_mat_file(write(tmp_path / "ok.mat", *[tiny] * MAX_VARIABLES), MB)
    named = compressed(matrix(b"n" * 600, (1, 1), 9, 2, b"\x01"))
    mat_refused(write(tmp_path / "name.mat", named), f"a variable header longer than {HEADER_PEEK} bytes")
    dims = compressed(matrix(b"X", (1,) * 33, 9, 2, b"\x01"))
    mat_refused(write(tmp_path / "dims.mat", dims), "a dimension list of 132 bytes")


@settings(max_examples=100)
@given(st.data())
def test_damaged_mat_files_pass_or_are_refused_never_crash(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    arrays = svhn_arrays(3)
    packed = data.draw(st.booleans())
    X = matrix(b"X", (32, 32, 3, 3), 9, 2, arrays["X"].tobytes(order="F"))
    y = matrix(b"y", (3, 1), 6, 2, arrays["y"].tobytes(order="F"))
    genuine = bytearray(mat_header() + b"".join((compressed(X), compressed(y)) if packed else (X, y)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, 400 if data.draw(st.booleans()) else len(genuine) - 1))
        genuine[at] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "m.mat"
    path.write_bytes(genuine)
    try:
        check_mat_file(path, 1 << 20)
    except UsageError as error:
        assert str(error).startswith(f"{path}: not a usable MATLAB 5 file: ")
