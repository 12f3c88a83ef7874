"""Emitters: each turns the same Program into something runnable or readable."""

# The source emitter of image networks registers its renderer with the source emitter.
from . import image_source as _image_source  # noqa: F401
