"""The data layer: the canonical manifest, image decoding and its cache, the synthetic catalogue,
importers of real catalogues, hash splits and per-attribute slices. Pure library: no pipeline tools."""

from .arrays import load_images
from .manifest import read_manifest, validate_manifest, write_manifest
from .splits import assign_split, assign_splits

__all__ = [
    "assign_split",
    "assign_splits",
    "load_images",
    "read_manifest",
    "validate_manifest",
    "write_manifest",
]
