"""The spec language: the pydantic model a YAML spec is validated into, the YAML reader that
locates every problem at its line and column, the shipped specs, the resource limits, the schema.
"""

from .._deprecated import forward

# The names of the flat layout's cliquegen.spec module, for one release.
__getattr__ = forward(
    "cliquegen.spec",
    {
        "BlockConfig": "cliquegen.spec.model",
        "BlockSpec": "cliquegen.spec.model",
        "BottleneckWidth": "cliquegen.spec.model",
        "ConvInit": "cliquegen.spec.model",
        "Defaults": "cliquegen.spec.model",
        "HeadSpec": "cliquegen.spec.model",
        "InitSpec": "cliquegen.spec.model",
        "InputSpec": "cliquegen.spec.model",
        "Kernel": "cliquegen.spec.model",
        "LinearInit": "cliquegen.spec.model",
        "Loc": "cliquegen.spec.model",
        "NAME_PATTERN": "cliquegen.spec.model",
        "NormSpec": "cliquegen.spec.model",
        "PositiveInt": "cliquegen.spec.model",
        "ScheduleOverride": "cliquegen.spec.model",
        "ScheduleSpec": "cliquegen.spec.model",
        "Spec": "cliquegen.spec.model",
        "SpecSemanticError": "cliquegen.spec.model",
        "StageIndex": "cliquegen.spec.model",
        "StageRef": "cliquegen.spec.model",
        "StemSpec": "cliquegen.spec.model",
        "Transit": "cliquegen.spec.model",
        "TransitionSpec": "cliquegen.spec.model",
        "compressed": "cliquegen.spec.model",
    },
)
