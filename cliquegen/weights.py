"""Deprecated: this module moved to cliquegen.checkpoint and cliquegen.interop; its names still work here for
one release, with a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.weights",
    {
        "Conversion": "cliquegen.interop.convert",
        "DATA_PARALLEL_PREFIX": "cliquegen.checkpoint.layouts",
        "EXPORTERS": "cliquegen.interop.weights",
        "Entry": "cliquegen.interop.convert",
        "IMPORTERS": "cliquegen.interop.weights",
        "IMPORT_FORMATS": "cliquegen.checkpoint.layouts",
        "Link": "cliquegen.interop.convert",
        "MAX_FILE_BYTES": "cliquegen._io",
        "OFFICIAL_FORMAT": "cliquegen.checkpoint.layouts",
        "SAFETENSORS_SUFFIX": "cliquegen.checkpoint.files",
        "TORCHVISION_FORMAT": "cliquegen.checkpoint.layouts",
        "check_convertible": "cliquegen.interop.official",
        "check_loads": "cliquegen.interop.convert",
        "check_torchvision_convertible": "cliquegen.interop.torchvision",
        "convert_from_official": "cliquegen.interop.official",
        "convert_from_torchvision": "cliquegen.interop.torchvision",
        "from_official": "cliquegen.interop.official",
        "from_torchvision": "cliquegen.interop.torchvision",
        "info_from_metadata": "cliquegen.checkpoint.files",
        "info_metadata": "cliquegen.checkpoint.files",
        "is_safetensors": "cliquegen.checkpoint.files",
        "load_weights": "cliquegen.checkpoint.load",
        "load_weights_file": "cliquegen.checkpoint.files",
        "official_checkpoint": "cliquegen.interop.official",
        "official_mapping": "cliquegen.interop.official",
        "read_safetensors_file": "cliquegen.checkpoint.files",
        "save_safetensors_file": "cliquegen.checkpoint.files",
        "save_weights_file": "cliquegen.checkpoint.files",
        "to_official": "cliquegen.interop.official",
        "to_torchvision": "cliquegen.interop.torchvision",
        "torchvision_links": "cliquegen.interop.torchvision",
    },
)
