"""Import real catalogues into the manifest: wide tables, long (labelling-tool) tables and
class-per-folder image trees (the Kaggle Fashion Product Images layout: kaggle.py).

Every importer turns its input into candidate rows, then shares one path: normalise and check labels,
check and hash images, drop duplicates, copy images under the data root, assign splits. Nothing bad
stops an import: a bad label is dropped (the row stays), a bad row or image is skipped, and each gets a
line in the rejects table (source, row, level, kind, reason) and a count in the summary.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..config import ImageParams, SplitParams
from ..errors import DataValidationError
from ..parallel import Meter, pmap
from .images import sha256_bytes
from .import_files import (
    CHECK_CHUNK,
    batched,
    check_job,
    file_stats,
    gc_paused,
    read_import_state,
    target_of,
    unchanged_since,
    write_image,
    write_import_state,
)
from .manifest import make_manifest, safe_relative_path
from .tables import table_rows

log = logging.getLogger(__name__)

REJECT_COLUMNS = ("source", "row", "level", "kind", "reason")
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none"})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
Taxonomy = Mapping[str, Mapping[str, Sequence[str]]]


def normalise(value: object) -> str | None:
    """Label text as compared with the vocabulary: lower case, runs of space/underscore -> '-'; None if empty."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = re.sub(r"[\s_]+", "-", str(value).strip().lower())
    return None if text in MISSING_MARKERS else text


@dataclass
class Candidate:
    """One image to import: where it is read from, its id and its raw labels."""

    source: str
    row: int
    image_file: Path | str  # a str where there are 100,000s (a Path costs more than the work on it)
    image_id: str
    dest: str  # path under the data root
    labels: dict[str, str | None]
    base: Path | None = None  # the folder image_file must stay inside (symlinks included)


@dataclass
class ImportLog:
    """Rejects and counts collected while importing."""

    rejects: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def reject(self, source: str, row: int, level: str, kind: str, reason: str) -> None:
        self.rejects.append((source, row, level, kind, reason))
        self.counts[f"{level} rejected: {kind}"] += 1

    def note(self, what: str, n: int = 1) -> None:
        self.counts[what] += n


@dataclass
class ImportResult:
    manifest: pd.DataFrame
    rejects: pd.DataFrame
    summary: pd.DataFrame  # columns: item, count

    def summary_text(self) -> str:
        width = max((len(s) for s in self.summary["item"]), default=10)
        return "\n".join(f"{item:<{width}}  {count:>8}" for item, count in self.summary.itertuples(index=False))

    def write_rejects(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rejects.to_csv(path, index=False)
        return path


# ---------------------------------------------------------------- the shared path


def _clean_labels(c: Candidate, attrs: Mapping[str, Sequence[str]], log_: ImportLog) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for attr, vocab in attrs.items():
        value = _normalise_cached(c.labels.get(attr))
        if value is not None and value not in vocab:
            log_.reject(c.source, c.row, "label", f"value not in vocabulary ({attr})",
                        f"image {c.image_id!r}: attribute {attr!r} value {c.labels.get(attr)!r} -> {value!r} "
                        f"not in vocabulary {list(vocab)}; label dropped, row kept")
            value = None
        out[attr] = value
    return out


def finish_import(candidates: Iterable[Candidate], article: str, taxonomy: Taxonomy, root: str | Path,
                  split: SplitParams, limits: ImageParams, log_: ImportLog, workers: int = 0,
                  say: Callable[[str], object] | None = log.info, state: str | Path | None = None) -> ImportResult:
    """Check labels and images, drop duplicates, copy images under `root` and build the manifest. Images are
    checked (fully decoded) and hashed on `workers` processes (0: every core from a few hundred up),
    CHECK_CHUNK candidates at a time; `say` gets a progress line with the rate and count.

    `state`: a file recording, for every image imported, its source file's size and mtime, its copy's path,
    size and mtime and its hash. An image whose source and copy both still have the recorded size and mtime
    is taken as it was, where its copy is (not read, decoded, hashed or copied again: a nightly re-import of
    a large catalogue touches only what changed, as rsync and DVC decide); any other image is copied to its
    candidate's `dest` (`progattr data import`: this run's part). The file is rewritten after the import.
    None: check everything."""
    with gc_paused():  # 100,000s of small tuples: the cyclic collector's passes cost ~20% of a re-import's walk
        return _finish_import(candidates, article, taxonomy, root, split, limits, log_, workers, say, state)


def _finish_import(candidates: Iterable[Candidate], article: str, taxonomy: Taxonomy, root: str | Path,
                   split: SplitParams, limits: ImageParams, log_: ImportLog, workers: int,
                   say: Callable[[str], object] | None, state: str | Path | None) -> ImportResult:
    attrs, root = taxonomy[article], Path(root)
    seen_ids: dict[str, int] = {}
    seen_hash: dict[str, str] = {}
    records, recorded = [], []
    known = read_import_state(state) if state is not None else {}
    meter = Meter("checking and hashing images", None, say)
    unchanged = 0
    for chunk in batched(candidates, CHECK_CHUNK):
        dirs: dict[str, str] = {}  # resolved folders, for this chunk only
        before = [known.get(str(c.image_file)) for c in chunk]  # (..., sha256, copy) of the last import
        fast = unchanged_since(chunk, before, root) if known else {}
        targets = [fast[i][0] if i in fast else target_of(c, root, dirs, b[5] if b else None)
                   for i, (c, b) in enumerate(zip(chunk, before, strict=True))]
        stats = {i: fast[i][1] if i in fast else file_stats(chunk[i].image_file, t[1], t[3], t[2])
                 for i, t in enumerate(targets) if not isinstance(t, DataValidationError)}
        reused = {i: before[i][4] for i, st in stats.items()
                  if st is not None and before[i] is not None and before[i][:4] == st}
        for i in stats.keys() - reused.keys():  # new or changed: copied to its own dest, not over its last copy
            if before[i] and before[i][5] != chunk[i].dest:
                targets[i] = target_of(chunk[i], root, dirs)
        unchanged += len(reused)
        safe = [i for i in stats if i not in reused]
        checked = dict(zip(safe, pmap(check_job, [(str(chunk[i].image_file), limits) for i in safe], workers,
                                      meter=meter), strict=True))
        checked.update({i: (sha, None) for i, sha in reused.items()})
        for i, c in enumerate(chunk):
            if c.image_id in seen_ids:
                log_.reject(c.source, c.row, "row", "duplicate image id",
                            f"image id {c.image_id!r} already imported from row {seen_ids[c.image_id]}")
                continue
            if isinstance(targets[i], DataValidationError):
                log_.reject(c.source, c.row, "row", "unsafe path", f"image {c.image_id!r}: {targets[i]}")
                continue
            sha, reason = checked[i]
            if reason is None and i not in reused:  # copied from the bytes just checked: a file replaced since is caught
                data = Path(c.image_file).read_bytes()
                reason = None if sha256_bytes(data) == sha else "image file changed while it was imported"
            if reason is not None:
                log_.reject(c.source, c.row, "row", _image_kind(reason), f"image {c.image_id!r}: {reason}")
                continue
            if sha in seen_hash:
                log_.reject(c.source, c.row, "row", "duplicate image content",
                            f"image {c.image_id!r} has the same content (sha256 {sha[:12]}...) as {seen_hash[sha]!r}")
                continue
            seen_ids[c.image_id], seen_hash[sha] = c.row, c.image_id
            dest, target = targets[i][:2]
            if i not in reused:
                write_image(Path(target), data)
            # a reused image's stats were just read; a copied one's copy has a new mtime
            now = stats[i] if i in reused else file_stats(c.image_file, target)
            recorded.append((str(c.image_file), *(now or (0, 0, 0, 0)), sha, dest))
            records.append((c.image_id, dest, sha, article, *_clean_labels(c, attrs, log_).values()))
    if meter.done:
        meter.finish()
    if unchanged and say:
        say(f"{unchanged:,} images unchanged since the last import (size and mtime of the file and its copy): "
            "not checked again")
    if state is not None:
        write_import_state(state, recorded)
    columns = ["image_id", "path", "sha256", "article", *attrs]  # built column by column: 100,000s of rows
    table = (pd.DataFrame(dict(zip(columns, map(list, zip(*records, strict=True)), strict=True)), columns=columns)
             if records else pd.DataFrame(columns=columns))
    manifest = make_manifest(table, taxonomy, split)
    log_.note("images imported", len(manifest))
    for attr in attrs:
        log_.note(f"labels present: {attr}", int(manifest[attr].notna().sum()) if len(manifest) else 0)
    return _result(manifest, log_)


def _image_kind(reason: str) -> str:
    for key in ("not found", "zero-byte", "over data.image.max_bytes", "decompression-bomb", "not an image", "changed"):
        if key in reason:
            return {"over data.image.max_bytes": "image too large (bytes)",
                    "decompression-bomb": "image too large (pixels)",
                    "changed": "image changed during import"}.get(key, f"image {key}")
    return "image undecodable or truncated"


def _result(manifest: pd.DataFrame, log_: ImportLog) -> ImportResult:
    rejects = pd.DataFrame(log_.rejects, columns=list(REJECT_COLUMNS))
    summary = pd.DataFrame(sorted(log_.counts.items()), columns=["item", "count"])
    return ImportResult(manifest, rejects, summary)


def _image_ref(ref: str, source: str, row: int, log_: ImportLog) -> str | None:
    try:
        return safe_relative_path(ref.strip())
    except DataValidationError as exc:
        log_.reject(source, row, "row", "unsafe path", str(exc))
        return None


# ---------------------------------------------------------------- wide tables


def import_wide(table: str | Path, images_dir: str | Path, article: str, taxonomy: Taxonomy, root: str | Path,
                dest: str, split: SplitParams, limits: ImageParams, image_column: str = "image",
                workers: int = 0, state: str | Path | None = None) -> ImportResult:
    """One row per image, one column per attribute (empty = unlabelled). Images are copied to root/dest/.
    The table is streamed: memory grows with the images imported, not with the rows read."""
    table, images_dir, log_ = Path(table), Path(images_dir), ImportLog()
    rows = table_rows(table, log_)
    with closing(rows):
        header = next(rows)
        if image_column not in header:
            raise DataValidationError(f"{table}: no {image_column!r} column; columns are {header}")
        attrs = taxonomy[article]
        for col in header:
            if col != image_column and col not in attrs:
                log_.note(f"column ignored (not an attribute of {article}): {col}")
        candidates = _wide_candidates(rows, header, image_column, table.name, images_dir, dest, attrs, log_)
        return finish_import(candidates, article, taxonomy, root, split, limits, log_, workers, state=state)


def _wide_candidates(rows: Iterable[tuple[int, list[str]]], header: list[str], image_column: str, source: str,
                     images_dir: Path, dest: str, attrs: Mapping[str, Sequence[str]],
                     log_: ImportLog) -> Iterator[Candidate]:
    column = {name: i for i, name in enumerate(header)}  # a name given twice: its last column, as a dict of the row
    i_image, picks = column[image_column], [(a, column.get(a)) for a in attrs]
    folder, join = os.fspath(images_dir), os.path.join
    for line, fields in rows:
        ref = _image_ref(fields[i_image], source, line, log_)
        if ref is not None:
            yield Candidate(source, line, join(folder, ref), ref, f"{dest}/{ref}",
                            {a: None if i is None else fields[i] for a, i in picks}, images_dir)


# ---------------------------------------------------------------- long tables

MAX_ROWS_LISTED = 10  # rows named per value in a "conflicting values" reject; the rest are counted


def import_long(table: str | Path, images_dir: str | Path, article: str, taxonomy: Taxonomy, root: str | Path,
                dest: str, split: SplitParams, limits: ImageParams, workers: int = 0,
                state: str | Path | None = None) -> ImportResult:
    """Rows (image, attribute, value[, annotator]); disagreeing values for one image+attribute become missing.
    The table is streamed into a tally per (image, attribute): memory grows with those, not with the rows."""
    table, images_dir, log_ = Path(table), Path(images_dir), ImportLog()
    attrs = taxonomy[article]
    first_row, labels = long_labels(table, attrs, log_)
    candidates = [Candidate(table.name, line, os.path.join(images_dir, ref), ref, f"{dest}/{ref}", labels[ref], images_dir)
                  for ref, line in first_row.items()]
    return finish_import(candidates, article, taxonomy, root, split, limits, log_, workers, state=state)


def long_labels(table: str | Path, attrs: Mapping[str, Sequence[str]], log_: ImportLog, key: str = "image"
                ) -> tuple[dict[str, int], dict[str, dict[str, str | None]]]:
    """A long table's labels: (image -> its first row, image -> attribute -> the agreed value or None).
    Images are named by the `key` column (a path under the images folder, or e.g. `sha256`); values
    that disagree for one image and attribute become missing, each with a line in `log_`. Values are
    normalised here and checked against the vocabulary by whoever applies them (`_clean_labels`)."""
    table = Path(table)
    rows = table_rows(table, log_)
    with closing(rows):
        header = next(rows)
        need = [key, "attribute", "value"]
        if [c for c in need if c not in header]:
            raise DataValidationError(f"{table}: a long table needs columns {need} (+ optional annotator); has {header}")
        first_row, votes = _tally_votes(rows, [header.index(c) for c in need], table.name, attrs, log_)
    return first_row, {ref: {a: _agree(table.name, ref, a, votes.get((ref, a), {}), log_) for a in attrs}
                       for ref in first_row}


def _tally_votes(rows: Iterable[tuple[int, list[str]]], columns: list[int], source: str,
                 attrs: Mapping[str, Sequence[str]], log_: ImportLog,
                 ) -> tuple[dict[str, int], dict[tuple[str, str], dict[str, list[int]]]]:
    """(image -> its first row, (image, attribute) -> value -> [count, first rows...]) in one pass.

    Per-row work is dictionary look-ups: image references, attribute names and values repeat, so each
    distinct one is checked or normalised once (a 1M-row file runs in seconds)."""
    i_image, i_attr, i_value = columns
    refs: dict[str, tuple[str | None, str]] = {}
    attr_names: dict[str, str | None] = {}
    first_row: dict[str, int] = {}
    votes: dict[tuple[str, str], dict[str, list[int]]] = {}
    for line, fields in rows:
        raw_ref, raw_attr = fields[i_image], fields[i_attr]
        if raw_ref not in refs:
            refs[raw_ref] = _checked_ref(raw_ref)
        ref, problem = refs[raw_ref]
        if ref is None:
            log_.reject(source, line, "row", "unsafe path", problem)
            continue
        first_row.setdefault(ref, line)
        if raw_attr not in attr_names:
            attr_names[raw_attr] = _attribute_name(raw_attr, attrs)
        attr = attr_names[raw_attr]
        if attr is None:
            log_.reject(source, line, "label", "unknown attribute",
                        f"image {ref!r}: attribute {raw_attr!r} is not one of {list(attrs)}")
            continue
        value = _normalise_cached(fields[i_value])
        if value is not None:
            tally = votes.setdefault((ref, attr), {}).setdefault(value, [0])
            tally[0] += 1
            if len(tally) <= MAX_ROWS_LISTED:
                tally.append(line)
    return first_row, votes


def _checked_ref(raw: str) -> tuple[str | None, str]:
    try:
        return safe_relative_path(raw.strip()), ""
    except DataValidationError as exc:
        return None, str(exc)


def _attribute_name(raw: str, attrs: Mapping[str, Sequence[str]]) -> str | None:
    attr = normalise(raw) or ""
    attr = attr.replace("-", "_") if attr.replace("-", "_") in attrs else attr
    return attr if attr in attrs else None


_normalise_cached = lru_cache(maxsize=65536)(normalise)


def _agree(source: str, ref: str, attr: str, values: dict[str, list[int]], log_: ImportLog) -> str | None:
    if len(values) <= 1:
        return next(iter(values), None)
    detail = ", ".join(f"{v!r} (rows {tally[1:]}{_more(tally)})" for v, tally in values.items())
    log_.reject(source, min(tally[1] for tally in values.values()), "label", "conflicting values",
                f"image {ref!r}: attribute {attr!r} has conflicting values {detail}; set to missing")
    return None


def _more(tally: list[int]) -> str:
    hidden = tally[0] - (len(tally) - 1)
    return f" and {hidden} more" if hidden else ""


# ---------------------------------------------------------------- class-per-folder trees


def import_folder(folder: str | Path, article: str, attribute: str, taxonomy: Taxonomy, root: str | Path,
                  dest: str, split: SplitParams, limits: ImageParams, workers: int = 0,
                  state: str | Path | None = None) -> ImportResult:
    """An image tree `<folder>/<class>/<image>` labelling one attribute; images directly in `folder` are unlabelled."""
    folder, log_ = Path(folder), ImportLog()
    if attribute not in taxonomy[article]:
        raise DataValidationError(f"attribute {attribute!r} is not one of {list(taxonomy[article])} ({article})")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    log_.note("files found", len(files))
    candidates = []
    for i, path in enumerate(files, start=1):
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            log_.reject(rel, i, "row", "not an image file name", f"{rel}: suffix {path.suffix!r} not in {list(IMAGE_SUFFIXES)}")
            continue
        ref = _image_ref(rel, rel, i, log_)
        if ref is None:
            continue
        parts = ref.split("/")
        label = parts[0] if len(parts) > 1 else None
        candidates.append(Candidate(rel, i, path, ref, f"{dest}/{ref}", {attribute: label}, folder))
    return finish_import(candidates, article, taxonomy, root, split, limits, log_, workers, state=state)
