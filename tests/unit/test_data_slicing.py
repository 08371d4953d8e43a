"""Per-attribute slices: labelled rows only, codes in vocabulary order, counts per split incl. zeros."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from progattr_core.data.manifest import make_manifest
from progattr_core.data.slicing import slice_by_attribute
from progattr_core.errors import DataValidationError
from tests.unit.data_helpers import params

P = params()


def test_slices_and_counts(tmp_path):
    n = 40
    rec = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "path": [f"x/{i}.png" for i in range(n)],
                        "sha256": [f"{i:064x}" for i in range(n)], "article": "jeans",
                        "fade": [None if i % 4 == 0 else "light-fade" for i in range(n)],
                        "shade": ["black"] * n, "distress": [None] * n})
    m = make_manifest(rec, P.taxonomy, P.data.split)
    summary = slice_by_attribute(m, "jeans", P.attributes("jeans"), tmp_path)
    fade = pd.read_parquet(tmp_path / "jeans" / "fade.parquet")
    assert len(fade) == 30 and set(fade["code"]) == {1} and set(fade["label"]) == {"light-fade"}
    assert sum(summary["attributes"]["fade"].values()) == 30 and sum(summary["attributes"]["distress"].values()) == 0
    counts = pd.read_csv(tmp_path / "jeans" / "counts.csv")
    assert len(counts) == 3 * (3 + 4 + 5)  # every class of every split, zeros included
    assert counts.query("attribute == 'shade' and `class` == 'black'")["count"].sum() == n
    assert json.loads((tmp_path / "jeans" / "summary.json").read_text())["images"] == n
    with pytest.raises(DataValidationError, match="no rows of article 'tops'"):
        slice_by_attribute(m, "tops", P.attributes("tops"), tmp_path)
