"""What ``prune_intermediate_layers`` removes from a generated model: for each block, the
modules that running the model up to that block does not use, named by their outermost
containers, and the ``unused_after_block`` table the model class states them in."""

from __future__ import annotations

from .pytext import BODY_WIDTH, INDENT, Seq, format_call, pyrepr


def outermost_unused(paths: list[str], used: set[str]) -> tuple[str, ...]:
    """The modules of ``paths`` not in ``used``, each named by its outermost container that holds
    no used module (``head`` for all of ``head.bn1``, ``head.bn2``), in declaration order."""
    busy = {".".join(path.split(".")[:depth]) for path in used for depth in range(1, path.count(".") + 2)}
    out: list[str] = []
    for path in paths:
        if path in used:
            continue
        parts = path.split(".")
        prefixes = [".".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        top = next(prefix for prefix in prefixes if prefix not in busy)
        if top not in out:
            out.append(top)
    return tuple(out)


def unused_lines(unused: list[tuple[str, ...]]) -> list[str]:
    """``unused_after_block = (...)``, one tuple of module paths per block, as ruff lays it out."""
    entries = [
        [f"({pyrepr(names[0])},),"]
        if len(names) == 1
        else format_call(0, Seq("(", tuple(map(pyrepr, names)), "),"), BODY_WIDTH)
        for names in unused
    ]
    if len(entries) == 1 and len(entries[0]) == 1:  # a 1-tuple's comma is no magic trailing comma
        return [f"unused_after_block = ({entries[0][0]})"]
    return ["unused_after_block = (", *(INDENT + line for lines in entries for line in lines), ")"]
