"""The canonical manifest: one row per image, read by every later step.

Columns: image_id, path (POSIX, relative to the data root), sha256, article, one pandas Categorical per
attribute (categories = the ordered class vocabulary of the taxonomy, NaN = not labelled), split.
A manifest may hold several articles; an attribute they share must have vocabularies where one is a
prefix of the other (true of the paper's taxonomy), so the categorical code is the class index in
every article's own vocabulary.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from ..config import SplitParams
from ..errors import DataValidationError
from .splits import SPLITS, assign_splits

BASE_COLUMNS = ("image_id", "path", "sha256", "article")
Taxonomy = Mapping[str, Mapping[str, Sequence[str]]]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9._+\-=@ ()\[\],]+$")
# a path that is already normal and safe, in one match: parts of those characters, none empty, "." or "..",
# none starting or ending with a space (what the checks below say one part at a time)
_PART = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9._+\-=@()\[\],](?:[A-Za-z0-9._+\-=@ ()\[\],]*[A-Za-z0-9._+\-=@()\[\],])?"
NORMAL_PATH = re.compile(f"{_PART}(?:/{_PART})*")


def relative_inside(path: str | Path, root: str | Path) -> str | None:
    """`path` as a POSIX path relative to `root` when it lies inside it (both resolved, symlinks
    followed), else None: the one test of "is this inside the project / the data root?"."""
    full, base = Path(path).resolve(), Path(root).resolve()
    return full.relative_to(base).as_posix() if full.is_relative_to(base) else None


def safe_relative_path(path: str) -> str:
    """`path` as a normalised POSIX path that stays inside its root; DataValidationError otherwise."""
    text = str(path)
    if NORMAL_PATH.fullmatch(text):  # the common case, already normal: one match (100,000s per import)
        return text
    if not text or "\x00" in text or "\\" in text:
        raise DataValidationError(f"path {text!r}: empty, or contains a NUL or a backslash")
    pure = PurePosixPath(text)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise DataValidationError(f"path {text!r} is absolute; manifest paths are relative to the data root")
    parts = [p for p in pure.parts if p != "."]
    if not parts or ".." in parts:
        raise DataValidationError(f"path {text!r} escapes the data root ('..') or is empty")
    bad = [p for p in parts if not _SAFE_PART.fullmatch(p) or p.startswith(" ") or p.endswith(" ")]
    if bad:
        raise DataValidationError(f"path {text!r}: component {bad[0]!r} has characters outside [A-Za-z0-9._+-=@ ()[],]")
    return "/".join(parts)


def resolve_inside(root: str | Path, rel: str, dirs: dict[str, str] | None = None) -> str:
    """The absolute file of a manifest path (a str: this runs 100,000s of times per import or tagging run,
    and a Path costs more than the checks), refusing anything (symlinks included) outside `root`.

    `dirs`: a cache of resolved folders, for a batch of calls over many files (an import or a tagging run
    of 100,000 images): each folder is resolved once, then each file costs one lstat (a symlinked file is
    resolved in full). The caller keeps it for one batch only, so a folder swapped for a symlink later is
    seen by the next batch."""
    if dirs is not None:
        return resolve_inside_stat(root, rel, dirs)[0]
    safe = safe_relative_path(rel)
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, safe))
    _check_inside(rel, full, base)
    return full


def resolve_inside_stat(root: str | Path, rel: str, dirs: dict[str, str]) -> tuple[str, os.stat_result | None]:
    """resolve_inside with its folder cache, and the file's `lstat` when the file is not a symlink (then
    what `os.stat` would say: a caller that needs the file's size and mtime makes no second system call);
    None when it is missing or a symlink (resolved in full)."""
    safe = safe_relative_path(rel)
    base = _real_folder(dirs, os.fspath(root))
    head, name = os.path.split(safe)
    full = os.path.join(_real_folder(dirs, os.path.join(base, head)) if head else base, name)
    try:
        st: os.stat_result | None = os.lstat(full)
    except OSError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        full, st = os.path.realpath(full), None
    _check_inside(rel, full, base)
    return full, st


def is_inside(full: str, base: str) -> bool:
    """Whether the resolved path `full` is the resolved folder `base` or lies under it."""
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def _check_inside(rel: str, full: str, base: str) -> None:
    if not is_inside(full, base):
        raise DataValidationError(f"path {rel!r} resolves to {full}, outside the data root {base}")


def _real_folder(dirs: dict[str, str], folder: str) -> str:
    real = dirs.get(folder)
    if real is None:
        real = dirs[folder] = os.path.realpath(folder)
    return real


def attribute_vocabularies(taxonomy: Taxonomy, articles: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """attribute -> categories for a manifest holding `articles` (the longest prefix-compatible vocabulary)."""
    merged: dict[str, tuple[str, ...]] = {}
    for article in articles:
        if article not in taxonomy:
            raise DataValidationError(f"article {article!r} is not in the taxonomy {sorted(taxonomy)}")
        for attr, vocab in taxonomy[article].items():
            vocab = tuple(vocab)
            have = merged.get(attr, ())
            short, long_ = sorted((have, vocab), key=len)
            if long_[: len(short)] != short:
                raise DataValidationError(
                    f"attribute {attr!r}: vocabularies {list(have)} and {list(vocab)} (article {article!r}) "
                    "are not prefix-compatible; keep these articles in separate manifests"
                )
            merged[attr] = long_
    return merged


def to_categoricals(df: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Cast attribute columns to Categoricals in vocabulary order, after checking every value."""
    vocabs = attribute_vocabularies(taxonomy, sorted(df["article"].unique()) if len(df) else [])
    _check_values(df, taxonomy, vocabs)
    out = df.copy()
    for attr, vocab in vocabs.items():
        values = out[attr].astype(object) if attr in out else pd.Series([None] * len(out), index=out.index)
        out[attr] = pd.Categorical(values.where(values.notna(), None), categories=list(vocab))
    for col in (*BASE_COLUMNS, "split"):
        out[col] = out[col].astype("str")
    return out[[*BASE_COLUMNS, *vocabs, "split"]]


def validate_manifest(df: pd.DataFrame, taxonomy: Taxonomy) -> None:
    """Raise DataValidationError naming the row, the value and what is allowed, for the first problem."""
    missing = [c for c in (*BASE_COLUMNS, "split") if c not in df.columns]
    if missing:
        raise DataValidationError(f"manifest lacks column(s) {missing}; has {list(df.columns)}")
    articles = sorted(df["article"].dropna().unique())
    vocabs = attribute_vocabularies(taxonomy, articles)
    unknown = [c for c in df.columns if c not in (*BASE_COLUMNS, "split") and c not in vocabs]
    if unknown:
        raise DataValidationError(f"manifest column(s) {unknown} are not attributes of articles {articles}")
    _check_base_columns(df)
    _check_values(df, taxonomy, vocabs)
    for attr, vocab in vocabs.items():
        if attr not in df.columns:
            raise DataValidationError(f"manifest lacks attribute column {attr!r} of articles {articles}")
        dtype = df[attr].dtype
        if not isinstance(dtype, pd.CategoricalDtype) or list(dtype.categories) != list(vocab):
            raise DataValidationError(
                f"manifest column {attr!r} must be a Categorical with categories {list(vocab)} "
                f"(use to_categoricals / read_manifest with the taxonomy), got {dtype}"
            )


def _where(df: pd.DataFrame, pos: int) -> str:
    return f"row {pos} (image_id {df['image_id'].iloc[pos]!r})"


def _check_base_columns(df: pd.DataFrame) -> None:
    for col in (*BASE_COLUMNS, "split"):
        values = df[col]
        if isinstance(values.dtype, pd.StringDtype):  # strings or missing: compared whole (100,000s of rows)
            bad = values.isna().to_numpy() | values.fillna("").eq("").to_numpy(dtype=bool)
        else:
            bad = (values.isna() | ~values.map(lambda v: isinstance(v, str) and v != "")).to_numpy()
        if bad.any():
            pos = int(bad.nonzero()[0][0])
            raise DataValidationError(f"manifest {_where(df, pos)}: {col} = {df[col].iloc[pos]!r} must be a non-empty string")
    for col in ("image_id", "path"):
        dup = df[col].duplicated()
        if dup.any():
            pos = int(dup.to_numpy().nonzero()[0][0])
            raise DataValidationError(f"manifest {_where(df, pos)}: duplicate {col} {df[col].iloc[pos]!r}")
    normal = NORMAL_PATH.fullmatch
    for pos in [i for i, path in enumerate(df["path"].tolist()) if not normal(path)]:  # the rest, checked in full
        try:
            safe_relative_path(df["path"].iloc[pos])
        except DataValidationError as exc:
            raise DataValidationError(f"manifest {_where(df, pos)}: {exc}") from None
    checks = (("sha256", df["sha256"].astype(str).str.fullmatch(_SHA256.pattern.strip("^$")).astype(bool),
               "64 lower-case hex digits"),
              ("split", df["split"].isin(SPLITS), f"one of {list(SPLITS)}"))
    for col, ok, allowed in checks:
        if not ok.all():
            pos = int((~ok).to_numpy().nonzero()[0][0])
            raise DataValidationError(f"manifest {_where(df, pos)}: {col} = {df[col].iloc[pos]!r}; allowed: {allowed}")


def _check_values(df: pd.DataFrame, taxonomy: Taxonomy, vocabs: Mapping[str, Sequence[str]]) -> None:
    article = df["article"].to_numpy()
    of = {name: article == name for name in pd.unique(article) if name in taxonomy}  # rows of each article
    for attr in vocabs:
        if attr not in df.columns:
            continue
        values = df[attr]
        present = values.notna().to_numpy()
        for name, mine in of.items():
            rows = mine & present
            if not rows.any():
                continue
            allowed = list(taxonomy[name].get(attr, ()))
            bad = rows & ~values.isin(allowed).to_numpy()
            if bad.any():
                pos = int(bad.nonzero()[0][0])
                raise DataValidationError(
                    f"manifest {_where(df, pos)}: article {name!r} attribute {attr!r} has value "
                    f"{values.iloc[pos]!r}; allowed: {allowed or 'none (not an attribute of this article)'}"
                )


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest as parquet, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path, taxonomy: Taxonomy | None = None) -> pd.DataFrame:
    """Read a manifest; with a taxonomy, restore categoricals in vocabulary order and validate it."""
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataValidationError(f"manifest {path} not found") from None
    if taxonomy is not None:
        df = to_categoricals(df, taxonomy)
        validate_manifest(df, taxonomy)
    return df


def make_manifest(records: pd.DataFrame, taxonomy: Taxonomy, split: SplitParams) -> pd.DataFrame:
    """A validated manifest from image_id/path/sha256/article + attribute string columns (None = missing)."""
    df = records.reset_index(drop=True).copy()
    df["split"] = assign_splits(df["image_id"], split)
    if not len(df):
        return df.reindex(columns=[*BASE_COLUMNS, "split"])
    df = to_categoricals(df, taxonomy)
    validate_manifest(df, taxonomy)
    return df


def merge_manifests(existing: pd.DataFrame, new: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """`existing` with `new` added; a row of `new` replaces the existing row with the same image_id."""
    keep = existing[~existing["image_id"].isin(set(new["image_id"]))]
    both = pd.concat([keep.astype({c: object for c in keep.columns}), new.astype({c: object for c in new.columns})],
                     ignore_index=True)
    merged = to_categoricals(both, taxonomy)
    validate_manifest(merged, taxonomy)
    return merged


def relative_to(manifest: pd.DataFrame, folder: str) -> pd.DataFrame:
    """The manifest with paths relative to `folder` (itself relative to the data root): a source folder's view."""
    prefix = safe_relative_path(folder) + "/"
    outside = ~manifest["path"].str.startswith(prefix)
    if outside.any():
        raise DataValidationError(f"path {manifest['path'][outside].iloc[0]!r} is not under {folder!r}")
    return manifest.assign(path=manifest["path"].str.slice(len(prefix)))
