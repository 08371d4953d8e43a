"""The built-in synthetic catalogue: garment images with paper-like sparse, slightly noisy labels.

Each image i of an article is drawn from its own random stream seeded by (seed, article, i), so the
catalogue is deterministic, independent of the number of worker processes, and growing `n` keeps the
first images (and their ids and splits) unchanged. Output is exactly what an import produces: image
files under `out_dir` plus a manifest whose paths are relative to the data root.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params, SplitParams
from ..errors import DataValidationError
from ..parallel import pmap
from .images import sha256_bytes
from .manifest import make_manifest, read_manifest, safe_relative_path, write_manifest
from .synth_draw import draw_garment

log = logging.getLogger(__name__)

DRAWABLE = ("dresses", "tops", "jeans")
JPEG_QUALITY = 92
_PARALLEL_FROM = 400  # below this many images a second process costs more than it saves
# Cap on q: `_label_mask` redraws until an attribute is missing, ~1 / (1 - q^k) tries. An infeasible
# rate (k = 2 cannot exceed full + (1 - full) / 2) would otherwise push q to 1 and the redraw never ends.
_MAX_Q = 0.95


def labelled_probability(k: int, full_fraction: float, label_rate: float) -> float:
    """Per-attribute labelling probability q for images that are not fully labelled.

    Non-full images get each of their k attributes with probability q, conditioned on at least one
    missing, so the full fraction stays `full_fraction` and each attribute's rate is `label_rate`:
    full + (1 - full) * (q - q^k) / (1 - q^k) = rate. Solved by bisection; capped at `_MAX_Q` when infeasible.
    """
    if full_fraction >= 1.0:
        return 1.0
    target = (label_rate - full_fraction) / (1.0 - full_fraction)
    lo, hi = 0.0, 1.0 - 1e-9
    for _ in range(60):
        q = (lo + hi) / 2
        rate = (q - q**k) / (1 - q**k) if k > 1 else 0.0
        lo, hi = (q, hi) if rate < target else (lo, q)
    return min((lo + hi) / 2, _MAX_Q)


def _label_mask(rng: np.random.Generator, k: int, full_fraction: float, q: float) -> np.ndarray:
    if rng.random() < full_fraction or k == 1:
        return np.ones(k, dtype=bool)
    while True:
        mask = rng.random(k) < q
        if not mask.all():
            return mask


def _stream(seed: int, article: str, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(article.encode()), index, purpose])


def _truth(article: str, attrs: Mapping[str, Sequence[str]], seed: int, index: int
           ) -> tuple[dict[str, str], np.random.Generator]:
    draw_rng = _stream(seed, article, index, 0)
    return {a: classes[int(draw_rng.integers(len(classes)))] for a, classes in attrs.items()}, draw_rng


def true_labels(article: str, attrs: Mapping[str, Sequence[str]], seed: int, index: int) -> dict[str, str | None]:
    """What image `index` of a catalogue drawn with `seed` shows, whatever its manifest says (hidden or
    noisy labels included); None where the attribute does not apply (sleeve_style of a sleeveless
    garment). What a perfect annotator would answer: benchmarks label cells with it."""
    truth: dict[str, str | None] = dict(_truth(article, attrs, seed, index)[0])
    if truth.get("sleeve_length") == "sleeveless" and "sleeve_style" in truth:
        truth["sleeve_style"] = None
    return truth


def _make_one(job: tuple) -> tuple[int, str, dict[str, str | None]]:
    """Draw, encode and write image `index`; return (index, sha256, observed labels)."""
    index, article, attrs, size, out_path, seed, full_fraction, q, label_noise = job
    truth, draw_rng = _truth(article, attrs, seed, index)
    img = draw_garment(article, truth, draw_rng, size)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    data = buf.getvalue()
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out_path)
    label_rng = _stream(seed, article, index, 1)
    mask = _label_mask(label_rng, len(attrs), full_fraction, q)
    observed: dict[str, str | None] = {}
    for (a, classes), keep in zip(attrs.items(), mask, strict=True):
        noisy = label_rng.random() < label_noise
        value = classes[int(label_rng.integers(len(classes)))] if noisy else truth[a]
        observed[a] = value if keep else None
    if truth.get("sleeve_length") == "sleeveless" and "sleeve_style" in observed:
        observed["sleeve_style"] = None  # not applicable (nothing drawn), as an annotator would leave it
    return index, sha256_bytes(data), observed


STAMP = "synth.json"  # beside manifest.parquet: what drew the folder, so a stale one is noticed


def catalogue_stamp(article: str, n: int, taxonomy: Mapping[str, Mapping[str, Sequence[str]]], size: int,
                    full_label_fraction: float, label_rate: float, label_noise: float, seed: int,
                    split_params: SplitParams) -> dict:
    """Everything a generated catalogue depends on: its arguments and the generator's own source (a
    change to the drawing code changes every image, so a folder drawn by older code is stale)."""
    code = hashlib.sha256()
    for module in ("synth.py", "synth_draw.py"):
        code.update((Path(__file__).parent / module).read_bytes())
    return {"article": article, "n": int(n), "classes": {a: list(v) for a, v in taxonomy[article].items()},
            "image_size": int(size), "full_label_fraction": float(full_label_fraction),
            "label_rate": float(label_rate), "label_noise": float(label_noise), "seed": int(seed),
            "split": asdict(split_params), "generator": code.hexdigest()[:16]}


def stale_reason(out_dir: str | Path, stamp: dict) -> str | None:
    """None when out_dir/<article> holds the catalogue `stamp` describes; else why it does not."""
    folder = Path(out_dir) / stamp["article"]
    if not (folder / "manifest.parquet").is_file():
        return "no catalogue there yet"
    try:
        old = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return f"no readable {STAMP} (drawn by an older progattr)"
    changed = sorted(k for k in stamp if old.get(k) != stamp[k])
    return f"changed since it was drawn: {', '.join(changed)}" if changed else None


def _prefix_in_root(out_dir: Path, root: str | Path | None) -> str:
    """out_dir relative to the data root (default out_dir itself) as a path prefix: "" or "a/b/"."""
    root = Path(root if root is not None else out_dir)
    try:
        rel_dir = Path(os.path.relpath(out_dir.resolve(), root.resolve())).as_posix()
        return "" if rel_dir == "." else safe_relative_path(rel_dir) + "/"
    except DataValidationError:
        raise DataValidationError(f"synth output {out_dir} is not inside the data root {root}") from None


def generate_catalogue(article: str, n: int, out_dir: str | Path, taxonomy: Mapping[str, Mapping[str, Sequence[str]]],
                       size: int, full_label_fraction: float, label_rate: float, label_noise: float, seed: int,
                       split_params: SplitParams, root: str | Path | None = None, workers: int = 0,
                       ) -> pd.DataFrame:
    """Write n JPEG images of `article` under out_dir/<article>/images; return their manifest.

    The returned manifest's paths are relative to `root` (the data root, default out_dir), which must
    contain out_dir. The same manifest with paths relative to out_dir is written to
    out_dir/<article>/manifest.parquet, so out_dir is a self-contained source folder for ingestion.
    """
    if article not in DRAWABLE:
        raise DataValidationError(f"the synthetic generator draws {list(DRAWABLE)}, not {article!r}")
    attrs = {a: tuple(v) for a, v in taxonomy[article].items()}
    out_dir = Path(out_dir)
    rel_dir = _prefix_in_root(out_dir, root)
    img_dir = out_dir / article / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / article / STAMP).unlink(missing_ok=True)  # until the new manifest is complete
    q = labelled_probability(len(attrs), full_label_fraction, label_rate)
    ids = [f"synth-{article}-s{seed}-{i:06d}" for i in range(n)]
    jobs = [(i, article, attrs, size, str(img_dir / f"{ids[i]}.jpg"), seed, full_label_fraction, q, label_noise)
            for i in range(n)]
    results = pmap(_make_one, jobs, workers, _PARALLEL_FROM)
    records = pd.DataFrame({
        "image_id": ids,
        "path": [f"{article}/images/{i}.jpg" for i in ids],
        "sha256": [r[1] for r in results],
        "article": article,
        **{a: [r[2][a] for r in results] for a in attrs},
    })
    manifest = make_manifest(records, taxonomy, split_params)
    keep = {f"{i}.jpg" for i in ids}  # a redraw with fewer images leaves none of the old ones behind
    for old in img_dir.glob(f"synth-{article}-*.jpg"):
        if old.name not in keep:
            old.unlink()
    write_manifest(manifest, out_dir / article / "manifest.parquet")  # a self-contained source folder
    stamp = catalogue_stamp(article, n, taxonomy, size, full_label_fraction, label_rate, label_noise, seed,
                            split_params)
    (out_dir / article / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    if rel_dir:
        manifest["path"] = rel_dir + manifest["path"]
    return manifest


def ensure_catalogue(params: Params, article: str, out_dir: str | Path, n: int | None = None,
                     seed: int | None = None, root: str | Path | None = None,
                     say: Callable[[str], object] = log.info) -> tuple[pd.DataFrame, str | None]:
    """The built-in catalogue of `article` in out_dir, drawn with params.synth (n and seed default to
    its n_images and seed) unless the one already there was drawn with the same params and generator.
    Returns its manifest (paths relative to `root`, default out_dir) and why it was (re)drawn: None
    when the folder was reused as it was. `say` reports which, before any drawing starts."""
    s = params.synth
    n = s.n_images if n is None else n
    seed = s.seed if seed is None else seed
    stamp = catalogue_stamp(article, n, params.taxonomy, s.image_size, s.full_label_fraction, s.label_rate,
                            s.label_noise, seed, params.data.split)
    reason = stale_reason(out_dir, stamp)
    if reason is None:
        manifest = read_manifest(Path(out_dir) / article / "manifest.parquet", params.taxonomy)
        rel_dir = _prefix_in_root(Path(out_dir), root)
        if rel_dir:
            manifest["path"] = rel_dir + manifest["path"]
        say(f"using the synthetic {article} catalogue already in {Path(out_dir) / article} "
            "(same params and generator)")
        return manifest, None
    say(f"drawing {n} synthetic {article} images ({s.image_size} px) in {Path(out_dir) / article}: {reason}")
    return generate_catalogue(article, n, out_dir, params.taxonomy, s.image_size, s.full_label_fraction,
                              s.label_rate, s.label_noise, seed, params.data.split, root=root), reason
