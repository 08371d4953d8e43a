"""Train/val/test per image from a salted hash of its id.

The split depends only on (image_id, salt, fractions), so it is the same for every attribute (the Base
sees all training images) and an image never moves when others are added to the catalogue.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..config import SplitParams

SPLITS = ("train", "val", "test")


def assign_split(image_id: str, split: SplitParams) -> str:
    """The split of one image: test, then val, then train, by where its hash falls in [0, 1)."""
    return assign_splits([image_id], split)[0]


def assign_splits(image_ids: Iterable[str], split: SplitParams) -> list[str]:
    """Each image's split: where sha256(salt NUL image_id)'s first 8 bytes fall in [0, 1). One loop with
    what it needs bound once (an import's manifest is 100,000s of ids)."""
    sha, prefix = hashlib.sha256, f"{split.salt}\x00".encode()
    test, val, scale = split.test_fraction, split.test_fraction + split.val_fraction, 2**64
    out = []
    for image_id in image_ids:
        u = int.from_bytes(sha(prefix + str(image_id).encode()).digest()[:8], "big") / scale
        out.append("test" if u < test else "val" if u < val else "train")
    return out
