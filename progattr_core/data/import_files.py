"""The image half of an import: check and hash (a pool job), where each image goes under the data root,
an atomic copy, and the state file that makes a re-import incremental (an image whose file and copy keep
their size and mtime is taken as the last import left it)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from ..config import ImageParams
from ..errors import DataValidationError
from .images import ImageRejected, check_image_file
from .manifest import resolve_inside, safe_relative_path

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


def target_of(c: Candidate, root: Path, dirs: dict[str, str] | None = None) -> tuple[str, str] | DataValidationError:
    """The candidate's path under `root` and its file there, refusing paths (symlinks included) that lead out
    of `root` or of the candidate's source folder. `dirs`: resolve_inside's folder cache for a batch."""
    try:
        dest = safe_relative_path(c.dest)
        target = resolve_inside(root, dest, dirs)  # a symlinked folder under root must not lead out of it
        if c.base is not None:
            base, image = os.fspath(c.base), os.fspath(c.image_file)
            rel = (image[len(base) + 1:] if image.startswith(base + os.sep)  # the common case, without pathlib
                   else Path(image).relative_to(base).as_posix())
            resolve_inside(base, rel, dirs)
        return dest, target
    except DataValidationError as exc:
        return exc


STATE_COLUMNS = ["file", "size", "mtime_ns", "copy_size", "copy_mtime_ns", "sha256"]


def import_state_path(cache_dir: str | Path, dest: str) -> Path:
    """Where `progattr data import` keeps the state of imports into `dest` (under the decode cache's folder,
    outside DVC's raw folder): <cache_dir>/imports/<dest with / as __>.parquet."""
    return Path(cache_dir) / "imports" / f"{dest.strip('/').replace('/', '__')}.parquet"


def file_stats(source: Path | str, copy: Path) -> tuple[int, int, int, int] | None:
    """(size, mtime_ns) of an image file and of its copy under the data root; None when either is missing."""
    try:
        a, b = os.stat(source), os.stat(copy)
    except OSError:
        return None
    return a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns


def read_import_state(path: str | Path) -> dict[str, tuple]:
    """file -> (size, mtime_ns, copy_size, copy_mtime_ns, sha256) from the last import's state file."""
    if not Path(path).is_file():
        return {}
    df = pd.read_parquet(path, columns=STATE_COLUMNS)
    return {f: tuple(rest) for f, *rest in df.itertuples(index=False)}


def write_import_state(path: str | Path, rows: list[tuple]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pd.DataFrame(rows, columns=STATE_COLUMNS).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk
