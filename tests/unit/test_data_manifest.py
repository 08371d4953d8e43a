"""The manifest: schema, categoricals in vocabulary order, validation messages, path safety."""

from __future__ import annotations

import pandas as pd
import pytest

from progattr_core.data.manifest import (
    attribute_vocabularies,
    make_manifest,
    merge_manifests,
    read_manifest,
    resolve_inside,
    safe_relative_path,
    validate_manifest,
    write_manifest,
)
from progattr_core.errors import DataValidationError
from tests.unit.data_helpers import params

P = params()
SHA = "a" * 64


def _records(n: int = 4, article: str = "jeans") -> pd.DataFrame:
    return pd.DataFrame({
        "image_id": [f"img-{i}" for i in range(n)],
        "path": [f"raw/x/img-{i}.png" for i in range(n)],
        "sha256": [f"{i:064x}" for i in range(n)],
        "article": article,
        "fade": ["no-fade", None, "heavy-fade", "light-fade"][:n],
        "shade": ["black", "light", None, "dark"][:n],
        "distress": [None, None, "ripped", "clean"][:n],
    })


def test_round_trip_keeps_vocabulary_order_and_missing(tmp_path):
    m = make_manifest(_records(), P.taxonomy, P.data.split)
    write_manifest(m, tmp_path / "m.parquet")
    back = read_manifest(tmp_path / "m.parquet", P.taxonomy)
    assert list(back.columns) == ["image_id", "path", "sha256", "article", "fade", "shade", "distress", "split"]
    assert list(back["shade"].cat.categories) == list(P.taxonomy["jeans"]["shade"])
    assert back["shade"].cat.codes.tolist() == [3, 0, -1, 2]
    assert back["split"].isin(["train", "val", "test"]).all()
    pd.testing.assert_frame_equal(back, m)


def test_value_outside_vocabulary_names_row_value_and_allowed():
    rec = _records()
    rec.loc[2, "shade"] = "navy"
    with pytest.raises(DataValidationError, match=r"row 2 \(image_id 'img-2'\).*'shade' has value 'navy'; allowed: \['light'"):
        make_manifest(rec, P.taxonomy, P.data.split)


@pytest.mark.parametrize("column,value,message", [
    ("path", "../outside.png", "escapes the data root"),
    ("path", "/etc/passwd", "is absolute"),
    ("sha256", "xyz", "64 lower-case hex"),
    ("image_id", "img-0", "duplicate image_id"),
])
def test_bad_base_columns_are_rejected(column, value, message):
    m = make_manifest(_records(), P.taxonomy, P.data.split)
    m.loc[1, column] = value
    with pytest.raises(DataValidationError, match=message):
        validate_manifest(m, P.taxonomy)


def test_unknown_article_and_non_categorical_columns():
    m = make_manifest(_records(), P.taxonomy, P.data.split)
    with pytest.raises(DataValidationError, match="must be a Categorical"):
        validate_manifest(m.astype({"fade": object}), P.taxonomy)
    m2 = m.astype({"article": object})
    m2.loc[0, "article"] = "hats"
    with pytest.raises(DataValidationError, match="'hats' is not in the taxonomy"):
        validate_manifest(m2, P.taxonomy)


@pytest.mark.parametrize("bad", ["../a.png", "a/../../b.png", "/abs.png", "C:/x.png", "a\\b.png", "", "a/\x00.png",
                                 "a/b$c.png"])
def test_path_traversal_and_odd_characters_are_rejected(bad):
    with pytest.raises(DataValidationError):
        safe_relative_path(bad)


@pytest.mark.parametrize("dirs", [None, {}], ids=["one-call", "folder-cache"])
def test_safe_paths_are_normalised_and_symlinks_out_of_root_refused(tmp_path, dirs):
    assert safe_relative_path("./raw//a/b.jpg") == "raw/a/b.jpg"
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    (root / "inner").symlink_to(root / "real")          # a folder symlink that stays inside: allowed
    (root / "real" / "in.png").write_bytes(b"y")
    (root / "real" / "also.png").symlink_to(root / "real" / "in.png")
    (root / "away").symlink_to(tmp_path / "outside")    # a folder symlink that leads out
    (tmp_path / "outside" / "x.png").write_bytes(b"z")
    for _ in range(2):  # the second round answers from the folder cache
        assert resolve_inside(root, "inner/in.png", dirs) == str((root / "real" / "in.png").resolve())
        assert resolve_inside(root, "inner/also.png", dirs) == str((root / "real" / "in.png").resolve())
        assert resolve_inside(root, "real/missing.png", dirs) == str((root / "real" / "missing.png").resolve())
        for bad in ("link.png", "away/x.png"):
            with pytest.raises(DataValidationError, match="outside the data root"):
                resolve_inside(root, bad, dirs)


def test_articles_sharing_attributes_need_prefix_compatible_vocabularies():
    vocabs = attribute_vocabularies({"a": {"x": ["p", "q"]}, "b": {"x": ["p", "q", "r"], "y": ["s", "t"]}}, ["a", "b"])
    assert vocabs == {"x": ("p", "q", "r"), "y": ("s", "t")}  # codes are the index in either article's vocabulary
    assert set(attribute_vocabularies(P.taxonomy, ["tops", "jeans"])) == {*P.taxonomy["tops"], *P.taxonomy["jeans"]}
    with pytest.raises(DataValidationError, match="'sleeve_length'.*not prefix-compatible"):
        attribute_vocabularies(P.taxonomy, ["tops", "dresses"])  # tops has 'elbow' between short and 3/4


def test_merge_replaces_same_ids_and_keeps_others():
    old = make_manifest(_records(3), P.taxonomy, P.data.split)
    new = _records(4).iloc[2:].copy()
    new.loc[2, "fade"] = "no-fade"
    merged = merge_manifests(old, make_manifest(new, P.taxonomy, P.data.split), P.taxonomy)
    assert merged["image_id"].tolist() == ["img-0", "img-1", "img-2", "img-3"]
    assert merged.loc[2, "fade"] == "no-fade"
