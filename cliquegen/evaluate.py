"""Deprecated: this module moved to cliquegen.train.evaluate; its names still work here for one release, with
a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.evaluate",
    {
        "TrainedModel": "cliquegen.checkpoint.load",
        "evaluate": "cliquegen.train.evaluate",
        "load_test_view": "cliquegen.train.evaluate",
        "load_trained": "cliquegen.checkpoint.load",
        "predict": "cliquegen.train.evaluate",
    },
)
