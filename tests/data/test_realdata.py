"""Opt-in (-m realdata): import the shared Kaggle Fashion Product Images catalogue and check the counts its
README states: 44,446 rows in styles.csv, 22 malformed rows recovered, 44,441 images with rows, 5 without."""

from __future__ import annotations

import pytest

from progattr_core.config import KaggleArticleParams, load_params
from progattr_core.data.importers import normalise
from progattr_core.data.kaggle import import_kaggle
from progattr_core.data.manifest import validate_manifest
from tests.paths import ROOT

KAGGLE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not (KAGGLE / "styles.csv").is_file(),
                       reason=f"the shared Kaggle catalogue is not at {KAGGLE} (see ../shared/datasets)"),
]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _counts(result) -> dict[str, int]:
    return dict(zip(result.summary["item"], result.summary["count"], strict=True))


def test_every_row_of_the_catalogue_is_accounted_for(params, tmp_path_factory):
    """All 142 articleTypes as one article: each of the 44,446 rows is imported or rejected with a reason."""
    import csv

    with open(KAGGLE / "styles.csv", newline="") as fh:
        types = sorted({r[4] for r in list(csv.reader(fh))[1:]})
    vocab = sorted({normalise(t) for t in types})
    taxonomy = {"catalogue": {"article_type": vocab}}
    spec = KaggleArticleParams(article_types=tuple(types), columns={"article_type": "articleType"}, keywords={},
                               name_ignore=(), keyword_default={})
    r = import_kaggle(KAGGLE, "catalogue", spec, taxonomy, tmp_path_factory.mktemp("all"), "raw/kaggle",
                      params.data.split, params.data.image)
    c = _counts(r)
    assert c["styles.csv rows"] == 44446
    assert c["styles.csv rows recovered (unquoted commas in productDisplayName)"] == 22
    assert c["styles.csv rows with an image"] == 44441
    assert c["row rejected: image not found"] == 5
    rejected_rows = sum(v for k, v in c.items() if k.startswith("row rejected"))
    assert c["images imported"] + rejected_rows == 44446
    assert set(r.rejects.loc[r.rejects["level"] == "row", "kind"]) == {"image not found", "duplicate image content"}
    assert r.manifest["article_type"].notna().all()
    validate_manifest(r.manifest, taxonomy)


def test_topwear_mapping_from_params(params, tmp_path_factory):
    spec = params.imports.kaggle["topwear"]
    r = import_kaggle(KAGGLE, "topwear", spec, params.taxonomy, tmp_path_factory.mktemp("top"), "raw/kaggle",
                      params.data.split, params.data.image)
    m, c = r.manifest, _counts(r)
    validate_manifest(m, params.taxonomy)
    assert c["styles.csv rows"] == 44446 and c["styles.csv rows with an image"] == 44441
    assert 10000 < len(m) < 12100  # Tshirts 7,069 + Shirts 3,215 + Tops 1,762, less duplicates and missing images
    assert set(m["article_type"].dropna()) == {"tshirts", "shirts", "tops"}
    rate = m["name_pattern"].notna().mean()
    assert 0.3 < rate < 0.6  # derived from product-name words: naturally sparse
    assert m["split"].value_counts(normalize=True)["test"] == pytest.approx(params.data.split.test_fraction, abs=0.02)
