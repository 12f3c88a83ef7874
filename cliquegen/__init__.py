"""cliquegen: compile declarative CliqueNet specs into PyTorch models.

spec = cliquegen.load_spec("specs/cifar10/cliquenet-k36-t12.yaml")
compiled = cliquegen.compile_spec(spec)     # .graph: UpdateGraph, .program: Program
model = cliquegen.build_fx(spec)            # torch.fx.GraphModule
src = cliquegen.generate_source(spec)       # standalone Python module text (imports only torch)
model = cliquegen.create_model("cliquenet-k36-t12", num_classes=100)
dot = cliquegen.render(spec, view="schedule", block=1)   # DOT text; format="svg" | "png"

With timm installed, every shipped spec is also a timm model (``timm.create_model("cliquenet_s3")``)
and ``cliquegen.register_timm_model(path)`` makes a spec of your own one.
"""

from ._builder import build_fx
from ._timm import register_timm_model, register_when_timm_loads
from .emit.source import build_source_model, generate_source
from .errors import CliqueGenError, Diagnostic, SpecError, UsageError
from .loader import load_spec
from .lower import Compiled, compile_spec
from .registry import create_model, list_models
from .render import render
from .spec import Spec
from .summary import Summary, summarize

__version__ = "0.1.0"

__all__ = [
    "CliqueGenError",
    "Compiled",
    "Diagnostic",
    "Spec",
    "SpecError",
    "Summary",
    "UsageError",
    "build_fx",
    "build_source_model",
    "compile_spec",
    "create_model",
    "generate_source",
    "list_models",
    "load_spec",
    "register_timm_model",
    "render",
    "summarize",
]

register_when_timm_loads()  # the shipped specs become timm models once timm is imported
