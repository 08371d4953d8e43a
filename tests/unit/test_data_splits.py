"""Hash splits: deterministic, close to the configured fractions, stable as the catalogue grows."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from progattr_core.data.splits import assign_split, assign_splits
from tests.unit.data_helpers import params

SPLIT = params().data.split


def test_fractions_are_respected_roughly():
    counts = Counter(assign_splits((f"img-{i}" for i in range(20000)), SPLIT))
    assert abs(counts["test"] / 20000 - SPLIT.test_fraction) < 0.015
    assert abs(counts["val"] / 20000 - SPLIT.val_fraction) < 0.015


def test_adding_images_never_moves_existing_ones():
    before = dict(zip([f"img-{i}" for i in range(1000)], assign_splits([f"img-{i}" for i in range(1000)], SPLIT), strict=True))
    grown = [f"new-{i}" for i in range(500)] + list(before) + [f"img-{i}" for i in range(1000, 3000)]
    after = dict(zip(grown, assign_splits(grown, SPLIT), strict=True))
    assert all(after[k] == v for k, v in before.items())


def test_salt_reshuffles():
    ids = [f"img-{i}" for i in range(300)]
    other = replace(SPLIT, salt="another-salt")
    assert assign_splits(ids, SPLIT) != assign_splits(ids, other)
    assert assign_split("img-1", SPLIT) == assign_split("img-1", SPLIT)


def test_splits_are_pinned():
    """The split of an id never changes between versions (a moved image would leak test images into training and
    change every key): these are what every data version so far was split with."""
    ids = [f"img-{i}" for i in range(12)] + ["é-ü", "x y", ""]
    assert assign_splits(ids, SPLIT) == ["test", "train", "val", "train", "val", "test", "train", "train", "train",
                                         "train", "val", "train", "test", "train", "test"]
    assert [assign_split(i, SPLIT) for i in ids] == assign_splits(ids, SPLIT)
