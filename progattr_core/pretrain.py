"""Pretraining the Base on a densely labelled catalogue, and keeping it away from evaluation data.

From scratch, ~20k fashion photos trail an initialised network by several points; pretraining on a
close domain is the lever. The Fashion Product Images catalogue (Kaggle layout: styles.csv +
images/) labels nearly every image with seven columns (masterCategory, ..., usage): a masked
multi-task network with one head per column (the `multilabel_masked` model and loss) learns a Base
and tail there, and `model.init: <the saved file>` starts every method of a later run from it.

No leakage: the rows whose articleType is in `pretrain.exclude_article_types` (what the evaluated
articles are made of) are left out, and the backbone's lineage file lists the content hash of every
image it saw; `check_no_leakage` refuses a run whose test images the backbone saw, naming both.
Class vocabularies come from the catalogue itself (values with at least `min_class_count` images):
the heads are discarded, only the Base and the tail are kept.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from .config import KaggleArticleParams, Params
from .data.importers import ImportLog, ImportResult, normalise
from .data.kaggle import import_kaggle, keyword_label, read_styles
from .errors import DataValidationError
from .model_init import ModelInit

log = logging.getLogger(__name__)
ARTICLE = "pretrain"         # the pretraining catalogue's name in manifests and taxonomies
LINEAGE_SUFFIX = ".lineage.json"


class DataLeakageError(DataValidationError):
    """A backbone saw images of the data a run evaluates on."""


def catalogue_vocabularies(styles_csv: str | Path, params: Params) -> dict[str, tuple[str, ...]]:
    """attribute -> its values (normalised as the importer does) with at least `min_class_count`
    rows among the rows pretraining keeps, most frequent first."""
    spec = params.pretrain
    excluded = set(spec.exclude_article_types)
    rows = [r for _, r in read_styles(styles_csv, ImportLog()) if r["articleType"] not in excluded]
    vocab = {}
    for attr, column in spec.columns.items():
        counts = Counter(v for v in (normalise(r[column]) for r in rows) if v is not None)
        kept = tuple(v for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= spec.min_class_count)
        if len(kept) < 2:
            raise DataValidationError(f"{styles_csv}: column {column!r} ({attr}) has {len(kept)} value(s) with at "
                                      f"least pretrain.min_class_count={spec.min_class_count} rows; a head needs 2")
        vocab[attr] = kept
    for attr, classes in spec.keywords.items():  # fine details named in the product names (pattern, ...)
        counts = Counter(keyword_label(r["productDisplayName"], classes)[0] for r in rows)
        kept = tuple(c for c in classes if counts[c] >= spec.min_class_count)
        if len(kept) < 2:  # a catalogue whose names do not say it: no such head, and a line saying so
            log.warning("pretrain.keywords.%s: %d class(es) named in at least pretrain.min_class_count=%d product "
                        "names of the kept rows; a head needs 2: pretraining without it", attr, len(kept),
                        spec.min_class_count)
            continue
        vocab[attr] = kept
    return vocab


def pretraining_params(params: Params, vocab: dict[str, tuple[str, ...]]) -> Params:
    """`params` with the pretraining catalogue as an article of the taxonomy (for the importer and
    the manifest reader); everything else unchanged."""
    return replace(params, taxonomy={**params.taxonomy, ARTICLE: vocab})


def import_catalogue(params: Params, folder: str | Path, root: str | Path, dest: str) -> ImportResult:
    """The catalogue's images of every articleType but the excluded ones, with the pretraining
    columns as labels, copied under `root`/`dest` (rows with a value outside the vocabulary keep
    their image, that cell unlabelled). `params` must come from `pretraining_params`."""
    folder = Path(folder)
    styles = read_styles(folder / "styles.csv", ImportLog())
    excluded = set(params.pretrain.exclude_article_types)
    kept = sorted({r["articleType"] for _, r in styles} - excluded)
    spec = KaggleArticleParams(tuple(kept), dict(params.pretrain.columns),
                               {a: dict(c) for a, c in params.pretrain.keywords.items()}, (), {})
    return import_kaggle(folder, ARTICLE, spec, params.taxonomy, root, dest, params.data.split, params.data.image,
                         params.data.workers)


def sample(manifest: pd.DataFrame, max_images: int, seed: int) -> pd.DataFrame:
    """Every row (max_images 0), or a seeded sample of max_images rows in manifest order."""
    if max_images <= 0 or max_images >= len(manifest):
        return manifest
    return manifest.sample(n=max_images, random_state=seed).sort_index()


def lineage(manifest: pd.DataFrame, params: Params, source: str, vocab: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """What a backbone saw: every image's content hash, the article types and columns, what was excluded."""
    return {"source": source, "n_images": int(len(manifest)), "sha256": sorted(manifest["sha256"]),
            "excluded_article_types": list(params.pretrain.exclude_article_types),
            "columns": dict(params.pretrain.columns),
            **({"keywords": {a: dict(c) for a, c in params.pretrain.keywords.items()}} if params.pretrain.keywords else {}),
            "classes": {a: list(v) for a, v in vocab.items()},
            "epochs": params.pretrain.epochs, "arch": params.model.arch, "image_size": params.model.image_size}


def lineage_path(backbone: str | Path) -> Path:
    backbone = Path(backbone)
    return backbone.with_name(backbone.name + LINEAGE_SUFFIX)


def write_lineage(backbone: str | Path, record: dict[str, Any]) -> Path:
    path = lineage_path(backbone)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def check_no_leakage(init: str, evaluated_sha256: Iterable[str], run: str) -> None:
    """Refuse a run whose evaluation images the backbone at `init` saw while pretraining.

    `init` is params' `model.init`; a file with a lineage file beside it (what `progattr pretrain`
    writes) is checked, `scratch` and `imagenet` have nothing to check (ImageNet holds no catalogue
    photos), and a file without lineage is allowed with a warning: nothing says what it saw."""
    if ModelInit.parse(init).kind in ("scratch", "imagenet"):
        return
    path = lineage_path(ModelInit.parse(init).path)
    if not path.is_file():
        log.warning("model.init=%s has no lineage file (%s): cannot check that it never saw %s's test images",
                    init, path.name, run)
        return
    seen = set(json.loads(path.read_text())["sha256"])
    overlap = sorted(seen.intersection(evaluated_sha256))
    if overlap:
        raise DataLeakageError(
            f"model.init={init} was pretrained on {len(overlap)} image(s) of {run}'s test split (by content "
            f"hash, e.g. {', '.join(h[:12] for h in overlap[:3])}); a backbone must never have seen the "
            f"images it is evaluated on: pretrain it with those articles excluded "
            f"(pretrain.exclude_article_types) or use another model.init")
