"""Manifest rows -> (images read from an on-disk decode cache, int64 labels, image ids).

The cache is the image store of every training, evaluation and pretraining: one raw uint8 file of
3*size*size bytes per (content sha256, size, resize method), `<cache_dir>/<RESIZE_TAG>-s<size>/<sha[:2]>/<sha>.u8`. Content-addressed, so it is shared by every
manifest, split and run, never stale, and a later epoch or run reads bytes instead of decoding JPEGs.
It is built on every core (build_cache), resumes where a killed build stopped, grows by the images a
new data version adds, and is read a batch at a time (CachedImages), so a process's memory is bounded
by its batch and model, not by the catalogue. retention (trim_cache) bounds its size on disk.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from ..config import ImageParams
from ..errors import DataValidationError
from ..parallel import Meter, pmap
from .images import RESIZE_TAG, decode_image, read_image_bytes, sha256_bytes, to_square_array
from .manifest import resolve_inside

if TYPE_CHECKING:  # torch is imported where images are read, not here: decoding workers start without it
    from torch import Tensor

log = logging.getLogger(__name__)

_DEFAULT_LIMITS = ImageParams(max_bytes=2**62, max_pixels=int(Image.MAX_IMAGE_PIXELS or 2**62))
_PARALLEL_FROM = 512  # fewer missing images decode faster in this process than a pool starts (64 px)


def cache_path(cache_dir: str | Path, sha256: str, image_size: int) -> Path:
    return Path(cache_dir) / f"{RESIZE_TAG}-s{image_size}" / sha256[:2] / f"{sha256}.u8"


def decode_to_array(root: str | Path, rel_path: str, sha256: str, image_size: int, limits: ImageParams) -> np.ndarray:
    """Decode one manifest image to uint8 (3, size, size), checking it still has the manifest's hash."""
    data = read_image_bytes(resolve_inside(root, rel_path), limits)
    if sha256_bytes(data) != sha256:
        raise DataValidationError(f"{rel_path}: content hash differs from the manifest's {sha256[:12]}...; "
                                  "the file changed since it was imported: re-import")
    return to_square_array(decode_image(data, limits, rel_path), image_size)


def cached_array(root: str | Path, cache_dir: str | Path, rel_path: str, sha256: str, image_size: int,
                 limits: ImageParams) -> np.ndarray:
    """The cached array if present, else decode it and write the cache entry atomically."""
    target = cache_path(cache_dir, sha256, image_size)
    nbytes = 3 * image_size * image_size
    try:
        buf = target.read_bytes()
        if len(buf) == nbytes:
            return np.frombuffer(buf, dtype=np.uint8).reshape(3, image_size, image_size)
        log.warning("cache entry %s has %d bytes, expected %d: re-decoding", target, len(buf), nbytes)
    except FileNotFoundError:
        pass
    arr = decode_to_array(root, rel_path, sha256, image_size, limits)
    target.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per process and thread: concurrent tasks of one flow (threads) may decode the
    # same image at once, and a shared name would let one rename the other's file away
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(arr.tobytes())
    os.replace(tmp, target)
    return arr


def label_codes(rows: pd.DataFrame, attributes: list[str]) -> np.ndarray:
    """int64 (N, len(attributes)): the class index in each attribute's vocabulary, -1 = not labelled."""
    y = np.full((len(rows), len(attributes)), -1, dtype=np.int64)
    for j, attr in enumerate(attributes):
        if attr not in rows.columns:
            raise DataValidationError(f"manifest has no attribute column {attr!r}; has {list(rows.columns)}")
        if not isinstance(rows[attr].dtype, pd.CategoricalDtype):
            raise DataValidationError(f"manifest column {attr!r} is {rows[attr].dtype}, not a Categorical: "
                                      "read it with read_manifest(path, taxonomy)")
        y[:, j] = rows[attr].cat.codes.to_numpy(dtype=np.int64)
    return y


class CachedImages:
    """A split's images, read from the decode cache batch by batch: the object holds the images' cache
    paths, never their pixels, so memory does not grow with the catalogue (the page cache, not this
    process, keeps hot entries). Indexed like a uint8 (N, 3, S, S) tensor (`x[i]`, `x[a:b]`, `x[idx]`
    with an index tensor or array) and gives one; `x[:]` is the whole split in memory."""

    ndim = 4

    def __init__(self, cache_dir: str | Path, rel_paths: Sequence[str], sha256s: Sequence[str], image_size: int,
                 root: str | Path, limits: ImageParams) -> None:
        import torch

        self.dtype = torch.uint8
        self._dir = Path(cache_dir) / f"{RESIZE_TAG}-s{image_size}"
        self._paths, self._shas = np.asarray(rel_paths, dtype=object), np.asarray(sha256s, dtype=object)
        self._root, self._limits, self._size = root, limits, image_size
        self.shape = torch.Size((len(self._shas), 3, image_size, image_size))

    def __len__(self) -> int:
        return len(self._shas)

    def __getitem__(self, index: int | slice | Tensor | np.ndarray | Sequence[int]) -> Tensor:
        import torch

        if isinstance(index, (int, np.integer)):
            return self[[int(index)]][0]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        if rows.ndim != 1:
            raise IndexError(f"CachedImages takes an int, a slice or a 1-d index, got shape {rows.shape}")
        out = np.empty((len(rows), 3, self._size, self._size), dtype=np.uint8)
        for j, i in enumerate(rows):
            sha = self._shas[i]
            try:  # the fast path: one read straight into the batch
                with open(self._dir / sha[:2] / f"{sha}.u8", "rb", buffering=0) as f:
                    if f.readinto(memoryview(out[j]).cast("B")) == out[j].nbytes:
                        continue
            except FileNotFoundError:  # trimmed since the split was loaded, or never built
                pass
            out[j] = cached_array(self._root, self._dir.parent, self._paths[i], sha, self._size, self._limits)
        return torch.from_numpy(out)


def _decode_job(job: tuple[str, str, str, str, int, ImageParams]) -> None:
    cached_array(*job)


def build_cache(rows: pd.DataFrame, root: str | Path, cache_dir: str | Path, image_size: int,
                limits: ImageParams | None = None, workers: int = 0,
                say: Callable[[str], object] | None = None) -> int:
    """Decode every image of `rows` that is not in the cache yet, on `workers` processes (0: every core
    from a few hundred images up), with a progress line. Entries are written one by one atomically, so a
    build killed halfway resumes where it stopped. Returns how many images were decoded."""
    limits = limits or _DEFAULT_LIMITS
    missing = [(str(root), str(cache_dir), rel, sha, image_size, limits)
               for rel, sha in zip(rows["path"], rows["sha256"], strict=True)
               if not cache_path(cache_dir, sha, image_size).exists()]
    missing = list({job[3]: job for job in missing}.values())  # one decode per content
    if missing:
        meter = Meter(f"decoding into the cache ({image_size} px)", len(missing), say)
        pmap(_decode_job, missing, workers, parallel_from=_PARALLEL_FROM, meter=meter)
        meter.finish()
    return len(missing)


def load_images(manifest: pd.DataFrame, root: str | Path, cache_dir: str | Path, image_size: int,
                attributes: list[str], split: str | None, limits: ImageParams | None = None,
                workers: int = 0, say: Callable[[str], object] | None = None,
                ) -> tuple[CachedImages, np.ndarray, list[str]]:
    """(images of one split in manifest order, int64 (N, A) codes with -1 = missing, image_ids), after
    decoding what the cache lacks (build_cache). The images stay on disk: see CachedImages.

    `limits` caps file size and pixels when an image must be decoded; by default only Pillow's own
    decompression-bomb limit applies (images were checked against params when they were imported).
    """
    limits = limits or _DEFAULT_LIMITS
    rows = manifest if split is None else manifest[manifest["split"] == split]
    build_cache(rows, root, cache_dir, image_size, limits, workers, say)
    images = CachedImages(cache_dir, list(rows["path"]), list(rows["sha256"]), image_size, root, limits)
    return images, label_codes(rows, attributes), [str(v) for v in rows["image_id"]]


def trim_cache(cache_dir: str | Path, keep: set[str], max_bytes: int, dry_run: bool = False) -> dict[str, int]:
    """Delete cache entries until the cache holds at most `max_bytes`: entries whose content hash is
    not in `keep` (what no current manifest uses) go first, least recently written first; an entry
    in `keep` is never deleted (it would only be decoded again). Every entry can be rebuilt from its
    image, so nothing here loses data. Returns counts and bytes, before and deleted."""
    entries = []
    for path in Path(cache_dir).glob("*/*/*.u8"):
        try:
            st = path.stat()
        except FileNotFoundError:  # deleted by a concurrent trim
            continue
        entries.append((path.stem in keep, st.st_mtime, st.st_size, path))
    total = sum(e[2] for e in entries)
    out = {"entries": len(entries), "bytes": total, "deleted": 0, "deleted_bytes": 0, "kept_in_use": 0}
    excess = total - max_bytes
    for in_use, _, size, path in sorted(entries, key=lambda e: (e[0], e[1])):
        if excess <= 0:
            break
        if in_use:
            out["kept_in_use"] = sum(1 for e in entries if e[0])
            break
        if not dry_run:
            path.unlink(missing_ok=True)
        out["deleted"] += 1
        out["deleted_bytes"] += size
        excess -= size
    return out
