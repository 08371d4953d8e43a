"""The Kaggle *Fashion Product Images* layout (Myntra's catalogue): `styles.csv` + `images/<id>.jpg`.

Rows whose `articleType` is selected become one article's rows; columns map to attributes, and
keyword attributes come from whole words or phrases of `productDisplayName` (params `imports.kaggle`):
brand phrases in `name_ignore` are dropped first ("U.S. Polo Assn." names a brand, not a collar), and a
`keyword_default` class labels the names that carry none of the attribute's keywords.
Everything after the parsing is the generic importer's path (importers.finish_import).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config import ImageParams, KaggleArticleParams, SplitParams
from ..errors import DataValidationError
from .importers import Candidate, ImportLog, ImportResult, Taxonomy, finish_import

KAGGLE_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year",
                  "usage", "productDisplayName")


def read_styles(styles_csv: str | Path, log_: ImportLog) -> list[tuple[int, dict[str, str]]]:
    """Parse styles.csv, recovering rows whose productDisplayName holds unquoted commas."""
    path = Path(styles_csv)
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if tuple(header) != KAGGLE_COLUMNS:
            raise DataValidationError(f"{path}: header {header} is not the Kaggle layout {list(KAGGLE_COLUMNS)}")
        for fields in reader:
            if not fields:
                continue
            if len(fields) > len(header):  # the extra fields belong to the product name
                fields = fields[: len(header) - 1] + [",".join(fields[len(header) - 1:])]
                log_.note("styles.csv rows recovered (unquoted commas in productDisplayName)")
            elif len(fields) < len(header):
                log_.reject(path.name, reader.line_num, "row", "malformed row",
                            f"expected {len(header)} fields, got {len(fields)}")
                continue
            out.append((reader.line_num, dict(zip(header, fields, strict=True))))
    log_.note("styles.csv rows", len(out) + sum(1 for r in log_.rejects if r[3] in ("malformed row", "not UTF-8")))
    return out


def _words(text: str) -> str:
    """' w1 w2 ... ': the lower-case words of text, space-separated and padded for whole-word search."""
    return " " + " ".join(re.findall(r"[a-z]+", text.lower())) + " "


def keyword_label(name: str, classes: Mapping[str, Sequence[str]], ignore: Sequence[str] = ()
                   ) -> tuple[str | None, list[str]]:
    """The class whose keyword (a word, or a phrase like 'round neck' / 'v-neck') is in the name, once
    the phrases in `ignore` are dropped from it."""
    words = _words(name)
    for phrase in ignore:
        words = words.replace(_words(phrase), " ")
    hits = [cls for cls, kws in classes.items() if any(_words(k) in words for k in kws)]
    return (hits[0] if len(hits) == 1 else None), hits


def import_kaggle(folder: str | Path, article: str, spec: KaggleArticleParams, taxonomy: Taxonomy,
                  root: str | Path, dest: str, split: SplitParams, limits: ImageParams, workers: int = 0,
                  state: str | Path | None = None) -> ImportResult:
    """styles.csv + images/<id>.jpg: rows whose articleType is in `spec` become `article` rows."""
    folder, log_ = Path(folder), ImportLog()
    rows = read_styles(folder / "styles.csv", log_)
    images = folder / "images"
    present = {p.stem for p in images.iterdir()} if images.is_dir() else set()
    log_.note("styles.csv rows with an image", sum(1 for _, r in rows if r["id"].strip() in present))
    wanted = set(spec.article_types)
    candidates = []
    for line, rec in rows:
        if rec["articleType"] not in wanted:
            log_.note("rows of other articleTypes (not selected)")
            continue
        sid = rec["id"].strip()
        labels = {attr: _kaggle_value(rec[col], attr, log_) for attr, col in spec.columns.items()}
        for attr, classes in spec.keywords.items():
            labels[attr], hits = keyword_label(rec["productDisplayName"], classes, spec.name_ignore)
            if len(hits) > 1:
                log_.reject("styles.csv", line, "label", "conflicting keywords",
                            f"id {sid}: productDisplayName {rec['productDisplayName']!r} matches {hits} for {attr!r}; missing")
            elif not hits and attr in spec.keyword_default:
                labels[attr] = spec.keyword_default[attr]
                log_.note(f"{attr}: no keyword in productDisplayName ({spec.keyword_default[attr]!r}, the default)")
            elif not hits:
                log_.note(f"{attr}: no keyword in productDisplayName (unlabelled)")
        candidates.append(Candidate("styles.csv", line, images / f"{sid}.jpg", f"kaggle-{sid}",
                                    f"{dest}/images/{sid}.jpg", labels, images))
    return finish_import(candidates, article, taxonomy, root, split, limits, log_, workers, state=state)


def _kaggle_value(raw: str, attr: str, log_: ImportLog) -> str | None:
    if raw.strip() == "NA":
        log_.note(f"{attr}: literal NA (unlabelled)")
        return None
    if not raw.strip():
        log_.note(f"{attr}: empty (unlabelled)")
    return raw
