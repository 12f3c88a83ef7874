"""Names of the weight layouts cliquegen recognises, so that loading can say what a file that
does not fit holds and which command converts it (the conversions live in :mod:`cliquegen.interop`).
"""

from __future__ import annotations

import re

#: Name of the only format so far, as the CLI spells it.
OFFICIAL_FORMAT = "official-pytorch"


#: The prefix ``nn.DataParallel`` adds to every key of the model it wraps.
DATA_PARALLEL_PREFIX = "module."


#: Prefixes that wrappers add to every key: ``nn.DataParallel``/DDP and ``torch.compile``.
WRAPPER_PREFIXES = (DATA_PARALLEL_PREFIX, "_orig_mod.")


#: Key layouts a weights file may have: (what it is, a test on its keys, import-weights format).
LAYOUTS = (
    (
        f"the authors' {OFFICIAL_FORMAT} checkpoint layout",
        re.compile(r"^(fir_trans|fir_bn|list_block|list_trans|list_compress|list_gb)\."),
        OFFICIAL_FORMAT,
    ),
    (
        "torchvision's DenseNet layout",
        re.compile(r"^features\.(conv0|norm0|denseblock\d+|transition\d+|norm5)\."),
        "torchvision",  # TORCHVISION_FORMAT, defined with its conversion below
    ),
    (
        "PDASR's refiner layout",
        re.compile(r"^(P\.)?(preConv0|preConv1|CliqueBlock|funsion|tail|sub_mean|add_mean)\."),
        "pdasr",  # PDASR_FORMAT
    ),
    (
        "the layout of a cliquegen model",
        re.compile(r"^(stem|block\d+|transition\d+|head|classifier)\."),
        None,
    ),
)


#: torchvision's DenseNets, as the CLI spells the format.
TORCHVISION_FORMAT = "torchvision"


#: PDASR's refinement network (its sub-band clique), as the CLI spells the format.
PDASR_FORMAT = "pdasr"


#: Formats ``cliquegen import-weights --format`` converts; a layout's hint names the command
#: only when its format is here.
IMPORT_FORMATS = (OFFICIAL_FORMAT, TORCHVISION_FORMAT, PDASR_FORMAT)
