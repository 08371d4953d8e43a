"""The image half of an import: check and hash (a pool job), where each image goes under the data root,
an atomic copy, the state file that makes a re-import incremental (an image whose file and copy keep
their size and mtime is taken as the last import left it), and the partitioned layout of an import folder.

**The layout** (`progattr data import`): each import run copies the images it found new or changed into
a part of its own, `<dest>/parts/<part>/`, written once and never changed; an unchanged image stays in
the part it was first copied into. `<dest>/index/manifest.parquet` names every image's copy (paths
relative to `<dest>`). DVC then tracks each part and the index separately (tasks/dvc_store.track_parts),
so a nightly hashes and walks what changed, not the catalogue; the data version is the index's hash."""

from __future__ import annotations

import gc
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from ..config import ImageParams
from ..errors import DataValidationError
from .images import ImageRejected, check_image_file
from .manifest import (
    NORMAL_PATH,
    is_inside,
    relative_to,
    resolve_inside,
    resolve_inside_stat,
    safe_relative_path,
    write_manifest,
)

if TYPE_CHECKING:
    from .importers import Candidate

T = TypeVar("T")


def write_image(target: Path, data: bytes) -> None:
    if target.exists() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


CHECK_CHUNK = 8192  # candidates checked at once: a streamed table's memory stays bounded by this, not its rows


def check_job(job: tuple[str, ImageParams]) -> tuple[str | None, str | None]:
    """(sha256, None) for an image that fully decodes within the limits, else (None, why): a pool job."""
    try:
        return check_image_file(job[0], job[1])[1], None
    except ImageRejected as exc:
        return None, exc.reason


Target = tuple[str, str, "os.stat_result | None", "os.stat_result | None"]


def target_of(c: Candidate, root: Path, dirs: dict[str, str], where: str | None = None) -> Target | DataValidationError:
    """(the candidate's path under `root` (`where`, else its own `dest`), its file there, that file's stat and
    the image file's, each None when not known from the checks), refusing paths (symlinks included) that lead
    out of `root` or of the candidate's source folder. `dirs`: resolve_inside's folder cache for a batch."""
    try:
        dest = safe_relative_path(where or c.dest)
        target, copy_st = resolve_inside_stat(root, dest, dirs)  # a symlinked folder under root must not lead out
        source_st = None
        if c.base is not None:
            base, image = os.fspath(c.base), os.fspath(c.image_file)
            rel = (image[len(base) + 1:] if image.startswith(base + os.sep)  # the common case, without pathlib
                   else Path(image).relative_to(base).as_posix())
            source_st = resolve_inside_stat(base, rel, dirs)[1]
        return dest, target, copy_st, source_st
    except DataValidationError as exc:
        return exc


def unchanged_since(chunk: Sequence[Candidate], before: Sequence[tuple | None], root: Path
                    ) -> dict[int, tuple[Target, tuple[int, int, int, int]]]:
    """The candidates whose image file and copy (`before[i]`: the import state's entry) both keep the size
    and mtime recorded: i -> (their Target, those stats). The nightly's walk over a catalogue where little
    changed: two `lstat`s a row, and each folder resolved and checked inside its root once per chunk. A
    candidate this cannot settle (not in the state, moved or changed, a symlink, a path out of the usual) is
    left to target_of, which checks it in full."""
    real_root = os.path.realpath(root)
    sources: dict[tuple[str, str], str | None] = {}  # (base, folder) -> the folder resolved; None: outside base
    copies: dict[str, str | None] = {}  # a copy's folder (relative to root) -> resolved; None: outside root
    lstat, is_link, normal, sep = os.lstat, stat.S_ISLNK, NORMAL_PATH.fullmatch, os.sep
    base_obj, base = None, ""
    out = {}
    for i, (c, b) in enumerate(zip(chunk, before, strict=True)):
        if b is None or c.base is None or not b[5] or not normal(b[5]):
            continue
        if c.base is not base_obj:
            base_obj, base = c.base, os.fspath(c.base)
        image = os.fspath(c.image_file)
        src_dir, _, src_name = image.rpartition(sep)
        copy_dir, _, copy_name = b[5].rpartition("/")
        if not copy_dir or not image.startswith(base + sep):
            continue
        real_src = sources.get((base, src_dir), "")
        if real_src == "":
            real_src = sources[base, src_dir] = _inside(base, src_dir)
        real_copy = copies.get(copy_dir, "")
        if real_copy == "":
            real_copy = copies[copy_dir] = _inside(real_root, os.path.join(real_root, copy_dir))
        if real_src is None or real_copy is None:
            continue
        full = f"{real_copy}/{copy_name}"
        try:
            a, c_st = lstat(f"{real_src}/{src_name}"), lstat(full)
        except OSError:
            continue
        if is_link(a.st_mode) or is_link(c_st.st_mode):
            continue
        now = (a.st_size, a.st_mtime_ns, c_st.st_size, c_st.st_mtime_ns)
        if now == b[:4]:
            out[i] = ((b[5], full, c_st, a), now)
    return out


def _inside(base: str, folder: str) -> str | None:
    """`folder` resolved (symlinks followed) when it lies in `base` (resolved too), else None."""
    real = os.path.realpath(folder)
    return real if is_inside(real, os.path.realpath(base)) else None


STATE_COLUMNS = ["file", "size", "mtime_ns", "copy_size", "copy_mtime_ns", "sha256", "copy"]
PARTS, INDEX = "parts", "index"  # the partitioned layout's two folders under an import folder
REVIEWS = "reviews.csv"  # beside a source manifest: the labels people gave through `progattr review import`


def import_state_path(cache_dir: str | Path, dest: str) -> Path:
    """Where `progattr data import` keeps the state of imports into `dest` (under the decode cache's folder,
    outside DVC's raw folder): <cache_dir>/imports/<dest with / as __>.parquet."""
    return Path(cache_dir) / "imports" / f"{dest.strip('/').replace('/', '__')}.parquet"


def file_stats(source: Path | str, copy: Path | str, source_st: os.stat_result | None = None,
               copy_st: os.stat_result | None = None) -> tuple[int, int, int, int] | None:
    """(size, mtime_ns) of an image file and of its copy under the data root (from their stats when given);
    None when either is missing."""
    try:
        a, b = source_st or os.stat(source), copy_st or os.stat(copy)
    except OSError:
        return None
    return a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns


def read_import_state(path: str | Path) -> dict[str, tuple]:
    """file -> (size, mtime_ns, copy_size, copy_mtime_ns, sha256, copy) from the last import's state file
    (`copy`: the copy's path under the data root); {} for a state written before copies were recorded
    (everything is checked again)."""
    if not Path(path).is_file():
        return {}
    import pyarrow.parquet as pq

    if "copy" not in pq.read_schema(path).names:
        return {}
    df = pd.read_parquet(path, columns=STATE_COLUMNS)
    files, *rest = (df[c].tolist() for c in STATE_COLUMNS)
    return dict(zip(files, zip(*rest, strict=True), strict=True))


def write_import_state(path: str | Path, rows: list[tuple]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pd.DataFrame(rows, columns=STATE_COLUMNS).to_parquet(tmp, index=False)
    os.replace(tmp, path)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Cyclic garbage collection off for a block that allocates many objects it keeps (reference counting
    still frees the rest; the cycles left are collected after); back to how it was after, whatever happens."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


@dataclass(frozen=True)
class ImportRun:
    """Where one `progattr data import` run writes: its images go to `part`, its index to `index`."""

    dest: str     # the import folder, relative to the data root
    part: str     # this run's part, relative to the data root: what the importers take as their `dest`
    index: Path   # <root>/<dest>/index/manifest.parquet
    state: Path   # the import state (import_state_path)

    @property
    def reviews(self) -> Path:
        """The labels people gave to this folder's images (tasks/review.import_review), beside the index."""
        return self.index.parent / REVIEWS


def new_import_run(root: str | Path, dest: str, cache_dir: str | Path, recheck: bool = False) -> ImportRun:
    """The partitioned import folder `dest` under `root` and a new part for this run (`recheck`: forget the
    import state, so every image is checked and copied again); refuses a folder in the single-folder layout
    of earlier versions and, through resolve_inside, one that leads out of `root`."""
    dest = safe_relative_path(dest)  # "raw/x/" and "raw/x" are one folder, and its parts' paths compare as written
    index = Path(resolve_inside(root, f"{dest}/{INDEX}/manifest.parquet"))
    if Path(resolve_inside(root, f"{dest}/manifest.parquet")).is_file():
        raise DataValidationError(f"{dest} holds an import in the single-folder layout of earlier progattr versions "
                                  f"({dest}/manifest.parquet); import into a new --dest, or delete {dest} (and "
                                  f"{dest}.dvc) first")
    state = import_state_path(cache_dir, dest)
    if recheck:
        state.unlink(missing_ok=True)
    return ImportRun(dest, f"{dest}/{PARTS}/{new_part_name()}", index, state)


def write_index(run: ImportRun, manifest: pd.DataFrame) -> tuple[Path, int]:
    """The import's manifest as the folder's index (paths relative to the folder); (its file, how many
    images this run copied into its part)."""
    copied = int(manifest["path"].str.startswith(run.part + "/").sum())
    return write_manifest(relative_to(manifest, run.dest), run.index), copied


def apply_reviews(manifest: pd.DataFrame, reviews: Path, vocab: Mapping[str, Sequence[str]]
                  ) -> tuple[pd.DataFrame, int]:
    """The import's manifest with the labels people gave (`reviews`: the log `progattr review import`
    appends to) put back over the table's: a re-import rewrites the index from the table, and a person's
    label must outlive it. A review applies to the image content it was given for (sha256), the latest one
    per image and attribute; one whose value is no longer in the attribute's vocabulary is left out.
    (the manifest, how many labels the reviews changed)."""
    if not reviews.is_file() or not len(manifest):
        return manifest, 0
    log = pd.read_csv(reviews, dtype=str, keep_default_na=False, usecols=["sha256", "attribute", "value"])
    log = log.drop_duplicates(["sha256", "attribute"], keep="last")
    manifest, changed = manifest.copy(), 0
    for attr, given in log.groupby("attribute", sort=False):
        if attr not in vocab or attr not in manifest:
            continue
        value = manifest["sha256"].map(dict(zip(given["sha256"], given["value"], strict=True)))
        use = value.notna() & value.isin(list(vocab[attr])) & (manifest[attr].astype(object) != value)
        if use.any():
            manifest.loc[use, attr] = value[use]
            changed += int(use.sum())
    return manifest, changed


def new_part_name() -> str:
    """A name for this import run's part, never used before: its UTC start time to the microsecond (parts
    sort in the order they were written) and a random suffix (two imports started at once)."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:] + f"Z-{secrets.token_hex(3)}"


def is_partitioned(folder: str | Path) -> bool:
    """Whether a source folder has the partitioned layout (an index and parts)."""
    return (Path(folder) / INDEX / "manifest.parquet").is_file() and (Path(folder) / PARTS).is_dir()


def parts_named(paths: pd.Series) -> list[str]:
    """The parts a partitioned index's paths (`parts/<part>/...`, relative to the folder) name, sorted."""
    return sorted(paths.astype("str").str.extract(f"^{PARTS}/([^/]+)/", expand=False).dropna().unique())
