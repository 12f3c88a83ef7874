"""FX models of image-to-image networks (a Program without features or classifier).

The graph is built as for every Program (:func:`.fx.build_graph`); the module class offers
what an image model needs: ``forward`` (B, C, H, W) -> (B, C', sH, sW), ``scale``,
``in_chans``, each block's output through ``forward_intermediates``, and
``set_grad_checkpointing`` for networks with pre-activation updates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import fx

from ..compiler.ir import Program
from .fx import build_graph, build_root, compile_outputs, with_attributes_of


class ImageGraphModule(fx.GraphModule):
    """A GraphModule mapping images to images."""

    program: Program  # what the graph was built from (set by emit_image_fx)

    def recompile(self) -> Any:
        result = super().recompile()
        type(self).output_runs = {}  # functions of the graph's other outputs, compiled when first called
        return result

    def __deepcopy__(self, memo: dict[int, Any]) -> ImageGraphModule:
        return with_attributes_of(self, super().__deepcopy__(memo), memo)

    @property
    def in_chans(self) -> int:
        return next(op.shape[0] for op in self.program.ops if op.kind == "input")

    @property
    def scale(self) -> int:
        """How many times larger than its input each side of the output is."""
        source = next(op.shape for op in self.program.ops if op.kind == "input")
        return self.program.values[self.program.output].shape[1] // source[1]

    @property
    def memory_efficient(self) -> bool:
        return any(op.attrs.get("memory_efficient") for op in self.program.ops if op.kind == "update")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch ``memory_efficient`` for the pre-activation updates (post-activation ones keep
        their intermediates either way)."""
        ops = [
            dataclasses.replace(op, attrs={**op.attrs, "memory_efficient": enable})
            if op.kind == "update"
            else op
            for op in self.program.ops
        ]
        self.program = dataclasses.replace(self.program, ops=ops)
        self.graph = build_graph(self.program)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output image and every block's output map, (B, C, h, w), in block order."""
        names = [self.program.output, *self.program.block_outputs]
        key = tuple(names)
        if key not in self.output_runs:
            self.output_runs[key] = compile_outputs(self.graph, names, "forward_intermediates")
        values = self.output_runs[key](self, x)
        return values[0], list(values[1:])


def emit_image_fx(program: Program, class_name: str = "ImageNet") -> ImageGraphModule:
    """A GraphModule computing an image Program, with freshly initialised parameters."""
    module = ImageGraphModule(build_root(program), build_graph(program), class_name=class_name)
    for path, decl in program.modules.items():
        if decl.kind == "constant":  # GraphModule copied it as a persistent buffer
            parent, _, leaf = path.rpartition(".")
            owner = module.get_submodule(parent)
            value = getattr(owner, leaf)
            delattr(owner, leaf)
            owner.register_buffer(leaf, value, persistent=False)
    module.program = program
    return module
