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

from typing import TYPE_CHECKING

from ._lazy import lazy
from ._version import __version__
from .checkpoint.info import ModelInfo
from .checkpoint.load import load_trained, load_weights
from .compiler.lower import Compiled, compile_spec
from .compiler.summary import Summary, summarize
from .emit.build import build_source_model, generate_source
from .errors import CliqueGenError, Diagnostic, SpecError, UsageError, WeightsError
from .interop.timm import register_timm_model, register_when_timm_loads
from .models import build_fx, create_model
from .spec.loader import load_spec
from .spec.model import Spec
from .spec.shipped import apply_overrides, list_models, resolve_spec

if TYPE_CHECKING:
    from .draw.views import render

# graphviz loads when the drawings are first used
__getattr__, __dir__ = lazy(__name__, {"render": ".draw.views"})

__all__ = [
    "CliqueGenError",
    "Compiled",
    "Diagnostic",
    "ModelInfo",
    "Spec",
    "SpecError",
    "Summary",
    "UsageError",
    "WeightsError",
    "__version__",
    "apply_overrides",
    "build_fx",
    "build_source_model",
    "compile_spec",
    "create_model",
    "generate_source",
    "list_models",
    "load_spec",
    "load_trained",
    "load_weights",
    "register_timm_model",
    "render",
    "resolve_spec",
    "summarize",
]

register_when_timm_loads()  # the shipped specs become timm models once timm is imported
