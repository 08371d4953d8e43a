"""Per-attribute slices of one article: the labelled rows of each attribute and their class counts per
split, written as files that a DVC stage declares as outputs (`<out_dir>/<article>/`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..errors import DataValidationError
from .splits import SPLITS


def class_counts(rows: pd.DataFrame, attributes: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Long table (attribute, split, class, count), every class of every split listed (zeros included)."""
    out = []
    for attr, vocab in attributes.items():
        for split in SPLITS:
            values = rows.loc[rows["split"] == split, attr].astype(object)
            counts = values.value_counts()
            out += [(attr, split, cls, int(counts.get(cls, 0))) for cls in vocab]
    return pd.DataFrame(out, columns=["attribute", "split", "class", "count"])


def slice_by_attribute(manifest: pd.DataFrame, article: str, attributes: Mapping[str, Sequence[str]],
                       out_dir: str | Path) -> dict:
    """Write `<attr>.parquet` (image_id, split, label, code) per attribute, counts.csv and summary.json."""
    rows = manifest[manifest["article"] == article]
    if rows.empty:
        raise DataValidationError(f"manifest has no rows of article {article!r}; it has {sorted(manifest['article'].unique())}")
    target = Path(out_dir) / article
    target.mkdir(parents=True, exist_ok=True)
    summary: dict = {"article": article, "images": int(len(rows)), "attributes": {}}
    for attr, vocab in attributes.items():
        labelled = rows[rows[attr].notna()]
        labels = labelled[attr].astype(object)
        codes = labels.map({c: i for i, c in enumerate(vocab)}).astype("int64")
        table = pd.DataFrame({"image_id": labelled["image_id"].astype(str), "split": labelled["split"].astype(str),
                              "label": labels.astype(str), "code": codes})
        _atomic_parquet(table, target / f"{attr}.parquet")
        summary["attributes"][attr] = {s: int((table["split"] == s).sum()) for s in SPLITS}
    counts = class_counts(rows, attributes)
    counts.to_csv(target / "counts.csv", index=False)
    (target / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
