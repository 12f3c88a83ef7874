"""Deprecated: this module moved to cliquegen.train.recipes; its names still work here for one release, with
a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.recipes",
    {
        "ADAMW_LR": "cliquegen.train.recipes",
        "DEFAULT_RECIPE": "cliquegen.train.recipes",
        "OPTIMIZERS": "cliquegen.train.recipes",
        "RECIPES": "cliquegen.train.recipes",
        "Recipe": "cliquegen.train.recipes",
        "SCHEDULES": "cliquegen.train.recipes",
        "get_recipe": "cliquegen.train.recipes",
        "make_optimization": "cliquegen.train.recipes",
        "make_optimizer": "cliquegen.train.recipes",
        "make_scheduler": "cliquegen.train.recipes",
        "milestones": "cliquegen.train.recipes",
    },
)
