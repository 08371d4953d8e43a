"""Manifest rows -> (uint8 images, int64 labels, image ids), through an on-disk decode cache.

The cache holds one raw uint8 file of 3*size*size bytes per (content sha256, size, resize method):
`<cache_dir>/<RESIZE_TAG>-s<size>/<sha[:2]>/<sha>.u8`. Content-addressed, so it is shared by every
manifest, split and run, never stale, and a later epoch or run reads bytes instead of decoding JPEGs.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..config import ImageParams
from ..errors import DataValidationError
from .images import RESIZE_TAG, decode_image, read_image_bytes, sha256_bytes, to_square_array
from .manifest import resolve_inside

log = logging.getLogger(__name__)


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


def load_arrays(manifest: pd.DataFrame, root: str | Path, cache_dir: str | Path, image_size: int,
                attributes: list[str], split: str | None, limits: ImageParams | None = None,
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 (N, 3, H, W), int64 (N, A) codes with -1 = missing, image_ids) for one split, in manifest order.

    `limits` caps file size and pixels when an image must be decoded; by default only Pillow's own
    decompression-bomb limit applies (images were checked against params when they were imported).
    """
    limits = limits or ImageParams(max_bytes=2**62, max_pixels=int(Image.MAX_IMAGE_PIXELS or 2**62))
    rows = manifest if split is None else manifest[manifest["split"] == split]
    x = np.empty((len(rows), 3, image_size, image_size), dtype=np.uint8)
    for i, (rel, sha) in enumerate(zip(rows["path"], rows["sha256"], strict=True)):
        x[i] = cached_array(root, cache_dir, rel, sha, image_size, limits)
    return x, label_codes(rows, attributes), [str(v) for v in rows["image_id"]]


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
