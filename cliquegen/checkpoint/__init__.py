"""What a trained model needs beside its weights (ModelInfo), weight files on disk, and strict
loading into a model with messages that name what does not fit.
"""

from .._deprecated import forward

# The names of the flat layout's cliquegen.checkpoint module, for one release.
__getattr__ = forward(
    "cliquegen.checkpoint",
    {
        "ModelInfo": "cliquegen.checkpoint.info",
        "load_weights_into": "cliquegen.checkpoint.load",
        "model_info": "cliquegen.checkpoint.info",
        "read_info": "cliquegen.checkpoint.info",
        "sha256_text": "cliquegen.checkpoint.info",
        "spec_record": "cliquegen.checkpoint.info",
    },
)
