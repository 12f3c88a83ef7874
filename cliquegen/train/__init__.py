"""Training on one process or many: settings, recipes, the loop, run folders, evaluation,
sweeps and their results and figures.
"""

from .._deprecated import forward
from .config import TrainConfig, TrainResult
from .loop import run

__all__ = ["TrainConfig", "TrainResult", "run"]

# The names of the flat layout's cliquegen.train module, for one release.
__getattr__ = forward(
    "cliquegen.train",
    {
        "AMP_DTYPES": "cliquegen.train.config",
        "BEST": "cliquegen.train.config",
        "BEST_SAFETENSORS": "cliquegen.train.config",
        "CURVES": "cliquegen.train.config",
        "DEVICES": "cliquegen.train.config",
        "HISTORY_COLUMNS": "cliquegen.train.config",
        "LAST": "cliquegen.train.config",
        "METRICS": "cliquegen.train.config",
        "METRICS_CSV": "cliquegen.train.config",
        "RESUME_KEYS": "cliquegen.train.config",
        "RUN_FILES": "cliquegen.train.config",
        "TENSORBOARD": "cliquegen.train.config",
        "evaluate_model": "cliquegen.train.loop",
        "load_checkpoint": "cliquegen.train.rundir",
        "plot_curves": "cliquegen.train.figures",
        "resolve_settings": "cliquegen.train.loop",
        "save_checkpoint": "cliquegen.train.rundir",
        "state_dict_hash": "cliquegen.train.rundir",
        "train": "cliquegen.train.loop",
        "ModelInfo": "cliquegen.checkpoint.info",
        "milestones": "cliquegen.train.recipes",
    },
)
