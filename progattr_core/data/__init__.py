"""The data layer: the canonical manifest, image decoding and its cache, the synthetic catalogue,
importers of real catalogues, hash splits and per-attribute slices. Pure library: no pipeline tools.
The image store (`arrays`: torch) is not imported here, so the importers' and the generator's worker
processes start without torch."""

from .manifest import read_manifest, validate_manifest, write_manifest
from .splits import assign_split, assign_splits

__all__ = [
    "assign_split",
    "assign_splits",
    "read_manifest",
    "validate_manifest",
    "write_manifest",
]
