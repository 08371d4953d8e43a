"""Importers on tiny catalogues made here: every bad case gets a reason, good rows are never lost."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from progattr_core.config import KaggleArticleParams
from progattr_core.data.importers import import_folder, import_long, import_wide, normalise
from progattr_core.data.kaggle import import_kaggle
from progattr_core.data.manifest import validate_manifest
from tests.unit.data_helpers import params, write_image

P = params()
COMMON = {"taxonomy": P.taxonomy, "split": P.data.split, "limits": P.data.image}


def _images(folder, names):
    for i, name in enumerate(names):
        write_image(folder / name, seed=i)


def _bad_images(folder):
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_bytes(b"plain text")
    data = (folder / "a.png").read_bytes()
    (folder / "trunc.png").write_bytes(data[: len(data) // 2])
    (folder / "copy_of_a.png").write_bytes(data)


def _rejected(result, kind):
    return result.rejects[result.rejects["kind"] == kind]


def test_normalise():
    assert normalise("  Heavy   Fade ") == "heavy-fade"
    assert normalise("Light_Fade") == "light-fade"
    assert normalise("NA") is None and normalise("") is None and normalise(None) is None


@pytest.mark.parametrize("workers", [0, 2])  # 0: in this process (few images); 2: checked on a pool
def test_wide_table_keeps_good_rows_and_explains_every_reject(tmp_path, workers):
    imgs = tmp_path / "imgs"
    _images(imgs, ["a.png", "b.png", "c.png", "sub/d.png"])
    _bad_images(imgs)
    table = tmp_path / "labels.csv"
    table.write_text(
        "image,fade,shade,distress,comment\n"
        "a.png, Heavy Fade ,DARK,,ok\n"            # case/whitespace normalised, empty = unlabelled
        "b.png,no-fade,navy,clean,x\n"             # navy not in vocabulary: label dropped, row kept
        "c.png,light-fade,light,ripped,x,EXTRA\n"  # malformed: too many fields
        "sub/d.png,NA,black,mild,x\n"
        "missing.png,no-fade,dark,clean,x\n"
        "zero.png,no-fade,dark,clean,x\n"
        "text.png,no-fade,dark,clean,x\n"
        "trunc.png,no-fade,dark,clean,x\n"
        "copy_of_a.png,no-fade,dark,clean,x\n"
        "../escape.png,no-fade,dark,clean,x\n"
        "/etc/passwd,no-fade,dark,clean,x\n"
        "a.png,no-fade,dark,clean,x\n"
    )
    r = import_wide(table, imgs, "jeans", root=tmp_path / "root", dest="raw/wide", workers=workers, **COMMON)
    m = r.manifest
    assert m["image_id"].tolist() == ["a.png", "b.png", "sub/d.png"]
    assert m["fade"].tolist()[0] == "heavy-fade" and m["shade"].tolist()[0] == "dark" and pd.isna(m["distress"][0])
    assert pd.isna(m["shade"][1]) and m["fade"][1] == "no-fade" and pd.isna(m["fade"][2])
    assert (tmp_path / "root" / "raw/wide/sub/d.png").is_file()
    validate_manifest(m, P.taxonomy)
    kinds = r.rejects.set_index("row")["kind"].to_dict()
    assert kinds == {3: "value not in vocabulary (shade)", 4: "malformed row", 6: "image not found",
                     7: "image zero-byte", 8: "image not an image", 9: "image undecodable or truncated",
                     10: "duplicate image content", 11: "unsafe path", 12: "unsafe path", 13: "duplicate image id"}
    assert "'navy'" in _rejected(r, "value not in vocabulary (shade)")["reason"].iloc[0]
    assert "escapes the data root" in r.rejects.set_index("row")["reason"][11]
    counts = r.summary.set_index("item")["count"]
    assert counts["images imported"] == 3 and counts["rows read"] == 12
    assert counts["column ignored (not an attribute of jeans): comment"] == 1


def test_wide_parquet_input(tmp_path):
    _images(tmp_path / "imgs", ["a.png", "b.png"])
    pd.DataFrame({"image": ["a.png", "b.png"], "fade": ["no-fade", None], "shade": ["light", "Black"]}).to_parquet(
        tmp_path / "t.parquet")
    r = import_wide(tmp_path / "t.parquet", tmp_path / "imgs", "jeans", root=tmp_path / "root", dest="raw/p", **COMMON)
    assert r.manifest["shade"].tolist() == ["light", "black"] and r.rejects.empty


def test_long_table_conflicts_become_missing_and_are_counted(tmp_path):
    imgs = tmp_path / "imgs"
    _images(imgs, ["a.png", "b.png"])
    (imgs / "zero.png").write_bytes(b"")
    table = tmp_path / "long.csv"
    table.write_text(
        "image,attribute,value,annotator\n"
        "a.png,fade,no-fade,ann1\n"
        "a.png,fade,no-fade,ann2\n"      # agreement
        "a.png,shade,dark,ann1\n"
        "a.png,shade,light,ann2\n"       # conflict -> missing
        "b.png,Distress,Ripped,ann1\n"   # attribute name and value normalised
        "b.png,colour,red,ann1\n"        # unknown attribute
        "b.png,fade,sun-bleached,ann1\n" # not in vocabulary
        "zero.png,fade,no-fade,ann1\n"
    )
    r = import_long(table, imgs, "jeans", root=tmp_path / "root", dest="raw/long", **COMMON)
    m = r.manifest.set_index("image_id")
    assert list(m.index) == ["a.png", "b.png"]
    assert m.loc["a.png", "fade"] == "no-fade" and pd.isna(m.loc["a.png", "shade"])
    assert m.loc["b.png", "distress"] == "ripped" and pd.isna(m.loc["b.png", "fade"])
    conflict = _rejected(r, "conflicting values")
    assert len(conflict) == 1 and "'dark' (rows [4])" in conflict["reason"].iloc[0] and "'light' (rows [5])" in conflict["reason"].iloc[0]
    assert set(r.rejects["kind"]) == {"conflicting values", "unknown attribute", "value not in vocabulary (fade)",
                                      "image zero-byte"}
    assert r.summary.set_index("item")["count"]["label rejected: conflicting values"] == 1


KAGGLE_SPEC = KaggleArticleParams(article_types=("Tshirts", "Shirts", "Tops"),
                                  columns={"gender": "gender", "colour": "baseColour", "usage": "usage"},
                                  keywords={"name_pattern": {"striped": ("striped", "stripes"), "checked": ("check", "checked"),
                                                             "printed": ("printed",), "solid": ("solid",)}},
                                  name_ignore=(), keyword_default={})


def test_kaggle_layout_quirks(tmp_path):
    folder = tmp_path / "kaggle"
    _images(folder / "images", ["1.jpg", "2.jpg", "3.jpg", "4.jpg", "6.jpg"])
    (folder / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "1,Men,Apparel,Topwear,Tshirts,Navy Blue,Fall,2011,Casual,Turtle Striped Men Navy Blue Tshirt\n"
        "2,Men,Apparel,Topwear,Shirts,NA,Summer,2012,NA,Myntra Men's Yes, its all about me Checked Shirt\n"
        "3,Women,Apparel,Topwear,Tops,Pink,Summer,2012,Casual,Printed, Striped, Pink Top\n"
        "4,Men,Footwear,Shoes,Casual Shoes,White,Winter,2012,Casual,Solid White Shoes\n"
        "5,Men,Apparel,Topwear,Tshirts,Blue,Fall,2011,Casual,Solid Blue Tshirt\n"
        "6,Men,Apparel,Topwear,Tshirts,Sky Violet,Fall,2011,Casual,Plain Tshirt\n"
    )
    r = import_kaggle(folder, "topwear", KAGGLE_SPEC, root=tmp_path / "root", dest="raw/kaggle", **COMMON)
    m = r.manifest.set_index("image_id")
    assert list(m.index) == ["kaggle-1", "kaggle-2", "kaggle-3", "kaggle-6"]
    assert m.loc["kaggle-1", "colour"] == "navy-blue" and m.loc["kaggle-1", "name_pattern"] == "striped"
    assert pd.isna(m.loc["kaggle-2", "colour"]) and pd.isna(m.loc["kaggle-2", "usage"])  # literal NA
    assert m.loc["kaggle-2", "name_pattern"] == "checked"  # recovered name, keyword found in it
    assert pd.isna(m.loc["kaggle-3", "name_pattern"])  # printed + striped: conflict
    assert pd.isna(m.loc["kaggle-6", "colour"]) and pd.isna(m.loc["kaggle-6", "name_pattern"])
    assert m.loc["kaggle-1", "path"] == "raw/kaggle/images/1.jpg"
    counts = r.summary.set_index("item")["count"]
    assert counts["styles.csv rows recovered (unquoted commas in productDisplayName)"] == 2
    assert counts["styles.csv rows"] == 6 and counts["styles.csv rows with an image"] == 5
    assert counts["rows of other articleTypes (not selected)"] == 1
    assert counts["colour: literal NA (unlabelled)"] == 1
    assert set(r.rejects["kind"]) == {"image not found", "conflicting keywords", "value not in vocabulary (colour)"}


def test_kaggle_keyword_default_and_ignored_brand(tmp_path):
    """params' T-shirt collar: 'polo' in the name, else collarless; the brand "U.S. Polo Assn." is no polo."""
    folder = tmp_path / "kaggle"
    _images(folder / "images", ["1.jpg", "2.jpg", "3.jpg", "4.jpg"])
    (folder / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "1,Men,Apparel,Topwear,Tshirts,Navy Blue,Fall,2011,Casual,U.S. Polo Assn. Men Navy Blue T-shirt\n"
        "2,Men,Apparel,Topwear,Tshirts,Navy Blue,Fall,2011,Casual,U.S. Polo Assn. Men Navy Blue Polo T-shirt\n"
        "3,Men,Apparel,Topwear,Tshirts,White,Fall,2011,Casual,Nike Men Printed White Tshirt\n"
        "4,Men,Apparel,Topwear,Tshirts,White,Fall,2011,Casual,Polo Round Neck Tshirt\n"
    )
    r = import_kaggle(folder, "tshirts", P.imports.kaggle["tshirts"], root=tmp_path / "root", dest="raw/k", **COMMON)
    collar = r.manifest.set_index("image_id")["collar"]
    assert collar["kaggle-1"] == "collarless" and collar["kaggle-2"] == "polo" and collar["kaggle-3"] == "collarless"
    assert pd.isna(collar["kaggle-4"])  # both classes named: a conflict stays unlabelled, not the default
    counts = r.summary.set_index("item")["count"]
    assert counts["collar: no keyword in productDisplayName ('collarless', the default)"] == 2


def test_folder_tree_labels_one_attribute(tmp_path):
    tree = tmp_path / "tree"
    _images(tree, ["ripped/a.png", "Heavy/b.png", "tattered/c.png", "d.png"])
    (tree / "ripped" / "notes.txt").write_text("x")
    r = import_folder(tree, "jeans", "distress", root=tmp_path / "root", dest="raw/tree", **COMMON)
    m = r.manifest.set_index("image_id")
    assert m.loc["ripped/a.png", "distress"] == "ripped" and m.loc["Heavy/b.png", "distress"] == "heavy"
    assert pd.isna(m.loc["tattered/c.png", "distress"]) and pd.isna(m.loc["d.png", "distress"])
    assert set(r.rejects["kind"]) == {"not an image file name", "value not in vocabulary (distress)"}


def test_reimport_is_idempotent(tmp_path):
    _images(tmp_path / "imgs", ["a.png"])
    (tmp_path / "t.csv").write_text("image,fade\na.png,no-fade\n")
    first = import_wide(tmp_path / "t.csv", tmp_path / "imgs", "jeans", root=tmp_path / "root", dest="raw/w", **COMMON)
    again = import_wide(tmp_path / "t.csv", tmp_path / "imgs", "jeans", root=tmp_path / "root", dest="raw/w", **COMMON)
    pd.testing.assert_frame_equal(first.manifest, again.manifest)


@pytest.mark.parametrize("header", ["img,fade\n", "image,attr,value\n"])
def test_missing_required_columns_is_an_error(tmp_path, header):
    from progattr_core.errors import DataValidationError

    (tmp_path / "t.csv").write_text(header)
    fn = import_wide if header.startswith("img,") else import_long
    with pytest.raises(DataValidationError, match="column"):
        fn(tmp_path / "t.csv", tmp_path, "jeans", root=tmp_path / "root", dest="raw/w", **COMMON)


def test_keyword_phrases_match_whole_words_in_order():
    from progattr_core.data.kaggle import keyword_label

    collar = {"polo": ("polo",), "round": ("round neck",), "v-neck": ("v-neck", "v neck")}
    assert keyword_label("Men Navy Round Neck T-shirt", collar) == ("round", ["round"])
    assert keyword_label("Women V-Neck Top", collar) == ("v-neck", ["v-neck"])
    assert keyword_label("Roundtrip Neckline Tee", collar) == (None, [])  # not whole words
    assert keyword_label("Polo with round neck", collar) == (None, ["polo", "round"])  # conflict


def test_a_reimport_checks_only_what_changed(tmp_path, caplog):
    """With a state file, images whose file and copy keep their size and mtime are not read again; a
    changed image is, and the manifest is what a full import gives."""
    imgs = tmp_path / "imgs"
    _images(imgs, ["a.png", "b.png", "c.png"])
    (tmp_path / "t.csv").write_text("image,fade\na.png,no-fade\nb.png,heavy-fade\nc.png,\n")
    common = {**COMMON, "root": tmp_path / "root", "dest": "raw/w", "state": tmp_path / "state.parquet"}
    first = import_wide(tmp_path / "t.csv", imgs, "jeans", **common)
    caplog.set_level(logging.INFO, logger="progattr_core.data.importers")
    again = import_wide(tmp_path / "t.csv", imgs, "jeans", **common)
    assert [r.message for r in caplog.records] == [
        "3 images unchanged since the last import (size and mtime of the file and its copy): not checked again"]
    pd.testing.assert_frame_equal(again.manifest, first.manifest)
    write_image(imgs / "b.png", seed=99)  # re-shot: new content
    caplog.clear()
    changed = import_wide(tmp_path / "t.csv", imgs, "jeans", **common)
    assert [r.message.split(":")[1].split(",")[0] for r in caplog.records][:1] == [" 1 images"]
    assert caplog.records[-1].message.startswith("2 images unchanged")
    full = import_wide(tmp_path / "t.csv", imgs, "jeans", **{**common, "root": tmp_path / "full", "state": None})
    pd.testing.assert_frame_equal(changed.manifest, full.manifest)
    assert changed.manifest["sha256"][1] != first.manifest["sha256"][1]
    assert (tmp_path / "root" / "raw/w/b.png").read_bytes() == (imgs / "b.png").read_bytes()


@pytest.mark.parametrize("swapped", ["images", "copies"])
def test_a_reimport_never_reuses_through_a_folder_swapped_for_a_symlink(tmp_path, swapped):
    """The nightly's quick path (unchanged size and mtime) resolves each folder again: a folder of the images
    or of their copies moved out and replaced by a symlink to where it went is refused, as on a first import."""
    imgs, root = tmp_path / "imgs", tmp_path / "root"
    _images(imgs / "sub", ["a.png", "b.png"])
    (tmp_path / "t.csv").write_text("image,fade\nsub/a.png,no-fade\nsub/b.png,heavy-fade\n")
    common = {**COMMON, "root": root, "dest": "raw/w", "state": tmp_path / "state.parquet"}
    assert len(import_wide(tmp_path / "t.csv", imgs, "jeans", **common).manifest) == 2
    folder = imgs / "sub" if swapped == "images" else root / "raw/w/sub"
    folder.rename(tmp_path / "away")
    folder.symlink_to(tmp_path / "away")  # the same files, sizes and mtimes, now outside
    again = import_wide(tmp_path / "t.csv", imgs, "jeans", **common)
    assert len(again.manifest) == 0
    assert again.rejects["kind"].tolist() == ["unsafe path", "unsafe path"]


def test_the_walk_pauses_cyclic_gc_and_restores_it_whatever_happens():
    import gc

    from progattr_core.data.import_files import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed import")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # off before, off after: a caller's choice is kept
    finally:
        gc.enable()
