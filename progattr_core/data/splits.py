"""Train/val/test per image from a salted hash of its id.

The split depends only on (image_id, salt, fractions), so it is the same for every attribute (the Base
sees all training images) and an image never moves when others are added to the catalogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..config import SplitParams

SPLITS = ("train", "val", "test")


def _unit_interval(image_id: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\x00{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(image_id: str, split: SplitParams) -> str:
    """The split of one image: test, then val, then train, by where its hash falls in [0, 1)."""
    u = _unit_interval(image_id, split.salt)
    if u < split.test_fraction:
        return "test"
    if u < split.test_fraction + split.val_fraction:
        return "val"
    return "train"


def assign_splits(image_ids: Iterable[str], split: SplitParams) -> list[str]:
    return [assign_split(str(i), split) for i in image_ids]
