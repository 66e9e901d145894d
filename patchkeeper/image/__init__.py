"""Stage 3 of the pipeline: which image, which commit, and its vanilla files."""

from patchkeeper.image.model import ImageFile, ImageRef, ImageSource, ResolvedImage

__all__ = ["ImageFile", "ImageRef", "ImageSource", "ResolvedImage"]
