"""Pretraining on a densely labelled catalogue (Kaggle layout), its lineage, and the leakage refusal."""

from __future__ import annotations

import json

import pytest

from progattr_core.errors import DataValidationError
from progattr_core.pretrain import DataLeakageError, catalogue_vocabularies, check_no_leakage, lineage_path
from tests.support import kaggle_folder
from tests.unit.data_helpers import params


def test_vocabularies_come_from_the_kept_rows_with_enough_images(tmp_path):
    folder = kaggle_folder(tmp_path)
    columns = "pretrain.columns={gender: gender, article_type: articleType, colour: baseColour}"
    vocab = catalogue_vocabularies(folder / "styles.csv", params(columns, "pretrain.min_class_count=2"))
    assert vocab["article_type"] == ("jeans", "watches")           # tshirts excluded; ties in name order
    assert set(vocab["colour"]) == {"black", "blue", "red"}         # the rare colour and NA left out
    assert set(vocab["gender"]) == {"men", "women"}
    with pytest.raises(DataValidationError, match=r"'masterCategory' \(master_category\) has 1 value"):
        catalogue_vocabularies(folder / "styles.csv", params("pretrain.min_class_count=2"))  # one value: no head



def test_heads_from_words_of_the_product_names(tmp_path, caplog):
    """pretrain.keywords: a fine detail of the other article types (here the pattern) as a head."""
    folder = kaggle_folder(tmp_path)
    keywords = "pretrain.keywords={pattern: {striped: [striped], checked: [checked], solid: [solid, plain]}}"
    vocab = catalogue_vocabularies(folder / "styles.csv", params(keywords, "pretrain.min_class_count=2",
                                                                 "pretrain.columns={gender: gender}"))
    assert vocab["pattern"] == ("striped", "solid")  # no name says checked: no class; 'printed' is not a keyword
    vocab = catalogue_vocabularies(folder / "styles.csv", params("pretrain.keywords={pattern: {solid: [solid], x: [y]}}",
                                                                 "pretrain.min_class_count=2",
                                                                 "pretrain.columns={gender: gender}"))
    assert "pattern" not in vocab and "pretrain.keywords.pattern: 1 class(es) named" in caplog.text  # no such head


def test_a_backbone_that_saw_a_test_image_is_refused_naming_both(tmp_path, caplog):
    backbone = tmp_path / "backbone.pt"
    backbone.write_bytes(b"weights")
    lineage_path(backbone).write_text(json.dumps({"sha256": ["a" * 64, "b" * 64]}))
    with pytest.raises(DataLeakageError, match=r"model.init=.*backbone.pt was pretrained on 1 image\(s\) of "
                                               r"tshirts \(v1\)'s test split .*e.g. bbbbbbbbbbbb"):
        check_no_leakage(str(backbone), ["b" * 64, "c" * 64], "tshirts (v1)")
    check_no_leakage(str(backbone), ["c" * 64], "tshirts (v1)")  # no overlap: fine
    check_no_leakage("scratch", ["a" * 64], "tshirts (v1)")
    lineage_path(backbone).unlink()
    check_no_leakage(str(backbone), ["a" * 64], "tshirts (v1)")  # nothing to check: allowed, with a warning
    assert "has no lineage file" in caplog.text
