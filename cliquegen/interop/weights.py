"""The formats of ``cliquegen import-weights`` and ``export-weights``: one converter each way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..checkpoint.layouts import OFFICIAL_FORMAT, PDASR_FORMAT, TORCHVISION_FORMAT
from ..spec.model import Spec
from .convert import Conversion
from .official import convert_from_official, official_checkpoint
from .pdasr import convert_from_pdasr, to_pdasr
from .torchvision import convert_from_torchvision, to_torchvision

#: ``import-weights --format F``: F's state_dict -> cliquegen's names, with what was tolerated.
IMPORTERS: dict[str, Callable[[Mapping[str, Any], Spec], Conversion]] = {
    OFFICIAL_FORMAT: convert_from_official,
    TORCHVISION_FORMAT: convert_from_torchvision,
    PDASR_FORMAT: convert_from_pdasr,
}


#: ``export-weights --to F``: a cliquegen state_dict -> the file F's code loads.
EXPORTERS: dict[str, Callable[[Mapping[str, Any], Spec], dict[str, Any]]] = {
    OFFICIAL_FORMAT: official_checkpoint,
    TORCHVISION_FORMAT: to_torchvision,
    PDASR_FORMAT: to_pdasr,
}
