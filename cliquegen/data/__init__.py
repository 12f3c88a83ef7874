"""Data sets for training and evaluation: the records, the bundled sets, the CIFAR and SVHN
readers, image folders, and super-resolution's pairs (MATLAB's bicubic degradation in
``resize``, patches and validation images in ``sr``).
"""

from .._deprecated import forward

# The names of the flat layout's cliquegen.data module, for one release.
__getattr__ = forward(
    "cliquegen.data",
    {
        "AUGMENTATIONS": "cliquegen.data.base",
        "ArrayDataset": "cliquegen.data.base",
        "Arrays": "cliquegen.data.base",
        "IMAGE_SUFFIXES": "cliquegen.data.folder",
        "ImageData": "cliquegen.data.base",
        "ImageFolder": "cliquegen.data.folder",
        "NAMES": "cliquegen.data.sets",
        "Normalization": "cliquegen.data.base",
        "PAD": "cliquegen.data.base",
        "SPLIT_SEED": "cliquegen.data.sets",
        "STATISTICS_SAMPLE": "cliquegen.data.folder",
        "TEST_FRACTION": "cliquegen.data.base",
        "channel_statistics": "cliquegen.data.base",
        "check_compatible": "cliquegen.data.base",
        "fetch_data": "cliquegen.data.sets",
        "load_data": "cliquegen.data.sets",
        "padded_random_crop": "cliquegen.data.base",
        "read_image": "cliquegen.data.folder",
    },
)
