"""Batch tagging: score a catalogue (folder, S3 prefix or the manifest's unlabelled cells) with the
champion, batch by batch, into a table of the accepted tags (image, attribute, label, probability,
model version) and a review queue: the answers below their attribute's calibrated threshold (chosen at
registration to reach serving.target_precision), least sure first (smallest margin between the top two
classes), with the top-3 a reviewer picks from.

Tasks pass paths and small records; the model is loaded once per process from the downloaded file.
Images are decoded and resized exactly as the service does (progattr_core.inference), the Base runs once
per image, and a bad image becomes a row in rejects.csv instead of stopping the run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from prefect import task

from progattr_core.config import ImageParams, Params
from progattr_core.data.images import ImageRejected, read_image_bytes, sha256_bytes
from progattr_core.data.import_files import INDEX, is_partitioned
from progattr_core.data.manifest import read_manifest, resolve_inside
from progattr_core.errors import DataValidationError
from progattr_core.inference import Refused, image_array
from progattr_core.model_file import load_model
from progattr_core.parallel import Meter, cpu_count, pmap, resolve_workers
from progattr_core.predict import for_inference, predict
from tasks import s3_images
from tasks.cluster import dask_map
from tasks.context import task_logger
from tracking.registry import Registry, model_name
from tracking.store import StoreConfig, redact

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_SOURCE = "manifest"
COLUMNS = ["image", "sha256", "attribute", "label", "probability", "model_name", "model_version"]
REVIEW_COLUMNS = ["image", "location", "sha256", "attribute", "label", "probability", "threshold", "margin", "top_k",
                  "model_name", "model_version"]


@dataclass(frozen=True)
class ChampionRef:
    article: str
    name: str
    version: str
    path: str                          # the downloaded model.pt


@dataclass(frozen=True)
class ImageItem:
    image: str                         # what the table calls the image: relative path, s3 URI or image_id
    location: str                      # where its bytes are: an absolute local path or an s3 URI
    skip: tuple[str, ...] = ()         # attributes already labelled (not scored)


@dataclass(frozen=True)
class TagBatch:
    rows: list[dict] = field(default_factory=list)     # accepted answers
    rejects: list[dict] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)   # answers below their attribute's threshold


def fetch_champion(store: StoreConfig, article: str, alias: str, dst: str) -> ChampionRef:
    """Download the version `alias` points to; DataValidationError if there is none."""
    registry = Registry.of(store)
    ref = registry.current(article, alias)
    if ref is None:
        raise DataValidationError(f"no @{alias} version of {model_name(article)} in the registry at "
                                  f"{redact(store.tracking_uri)}: approve a version first")
    path = registry.download(ref, Path(dst) / f"v{ref.version}")
    task_logger().info("tagging with %s version %s (@%s)", ref.name, ref.version, alias)
    return ChampionRef(article, ref.name, ref.version, str(path))


def _folder_items(folder: Path) -> list[ImageItem]:
    if not folder.is_dir():
        raise DataValidationError(f"tagging source {str(folder)!r} is not a folder, an s3:// prefix or "
                                  f"{MANIFEST_SOURCE!r}")
    items, dirs = [], {}
    if is_partitioned(folder):  # an import folder: the images its index names (older parts keep superseded copies)
        index = pd.read_parquet(folder / INDEX / "manifest.parquet", columns=["image_id", "path"])
        return [ImageItem(str(i), resolve_inside(folder, p, dirs)) for i, p in index.itertuples(index=False)]
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        rel = path.relative_to(folder).as_posix()
        items.append(ImageItem(rel, resolve_inside(folder, rel, dirs)))  # refuses symlinks leading outside
    return items


def _manifest_items(params: Params, root: Path, article: str) -> list[ImageItem]:
    """Images of `article` with at least one unlabelled attribute; labelled ones are skipped."""
    attrs = list(params.attributes(article))
    manifest = read_manifest(root / params.data.manifest, params.taxonomy)
    rows = manifest[manifest["article"] == article]
    data_root = root / params.data.root
    items, dirs = [], {}
    for rec in rows[["image_id", "path", *attrs]].itertuples(index=False):
        labelled = tuple(a for a, v in zip(attrs, rec[2:], strict=True) if not pd.isna(v))
        if len(labelled) < len(attrs):
            items.append(ImageItem(str(rec.image_id), resolve_inside(data_root, rec.path, dirs), labelled))
    return items


def list_catalogue(source: str, params: Params, root: str, article: str) -> list[ImageItem]:
    """The images to score: a folder (relative to `root` unless absolute), an s3:// prefix, or 'manifest'."""
    if source == MANIFEST_SOURCE:
        items = _manifest_items(params, Path(root), article)
    elif source.startswith("s3://"):
        items = [ImageItem(uri, uri) for uri in s3_images.list_objects(source, IMAGE_SUFFIXES)]
    else:
        folder = Path(source) if os.path.isabs(source) else Path(root) / source
        items = _folder_items(folder.resolve())
    task_logger().info("%d images to tag from %s", len(items), source)
    return items


def batches(items: list[ImageItem], size: int) -> list[list[ImageItem]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@functools.lru_cache(maxsize=2)
def _model(path: str):
    return for_inference(load_model(path), batched=True)  # BatchNorm folded, channels-last from 128 px


@functools.lru_cache(maxsize=2)
def _labelled_by_hash(manifest: str, article: str, attrs: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """sha256 -> attributes the manifest already labels, for `only_missing` on folders and S3."""
    df = read_manifest(manifest)
    df = df[df["article"] == article]
    present = [a for a in attrs if a in df.columns]  # an attribute the manifest lacks is missing everywhere
    return {sha: tuple(a for a, v in zip(present, vals, strict=True) if not pd.isna(v))
            for sha, *vals in df[["sha256", *present]].itertuples(index=False)}


def _read(item: ImageItem, limits: ImageParams) -> bytes:
    if item.location.startswith("s3://"):
        return s3_images.read_object(item.location, limits.max_bytes)
    return read_image_bytes(item.location, limits)


def tag_batch(model_ref: ChampionRef, items: list[ImageItem], limits: ImageParams,
              labelled_manifest: str | None = None) -> TagBatch:
    """Score one batch: every attribute not in the item's `skip` (or labelled in `labelled_manifest`);
    accepted answers are tags, the others go to review."""
    model = _model(model_ref.path)
    attrs = tuple(model.classes)
    known = _labelled_by_hash(labelled_manifest, model_ref.article, attrs) if labelled_manifest else {}
    arrays, kept, hashes, rejects = [], [], [], []
    for item in items:
        try:
            data = _read(item, limits)
            arrays.append(image_array(data, limits, model.image_size, item.image))
        except ImageRejected as exc:
            rejects.append({"image": item.image, "reason": exc.reason})
            continue
        except Refused as exc:
            rejects.append({"image": item.image, "reason": f"{exc.code}: {exc.message}"})
            continue
        kept.append(item)
        hashes.append(sha256_bytes(data))
    if not kept:
        return TagBatch([], rejects)
    preds = predict(model, np.stack(arrays), top_k=3, batch_size=len(arrays))
    rows, review = [], []
    for item, sha, pred in zip(kept, hashes, preds, strict=True):
        skip = set(item.skip) | set(known.get(sha, ()))
        for attr, p in pred.items():
            if attr in skip:
                continue
            row = {"image": item.image, "sha256": sha, "attribute": attr, "label": p.label,
                   "probability": p.probability, "model_name": model_ref.name, "model_version": model_ref.version}
            if p.accepted:
                rows.append(row)
                continue
            second = p.top_k[1][1] if len(p.top_k) > 1 else 0.0
            review.append({**row, "location": item.location, "margin": p.probability - second,
                           "threshold": model.calibration.get(attr, {}).get("threshold", 0.0),
                           "top_k": json.dumps([[lab, round(prob, 4)] for lab, prob in p.top_k])})
    return TagBatch(rows, rejects, review)


SHARD_IMAGES = 1024  # images per part: the most a killed run redoes per worker, and the unit spread over workers
_TYPES = {"probability": "float64", "threshold": "float64", "margin": "float64"}


@dataclass(frozen=True)
class TagParts:
    """A tagging run's part files: `<out_dir>/.parts/<key>/part-NNNNNN/`, one per shard of images."""

    folder: str
    key: str                           # model version, source, options and the images listed
    parts: int
    images: int
    reused: int                        # parts a killed run had already written


def run_key(champion: ChampionRef, source: str, items: list[ImageItem], batch_size: int,
            labelled_manifest: str | None) -> str:
    """What a run's parts depend on: the model version, the source and options, every image listed."""
    h = hashlib.sha256(json.dumps([champion.name, champion.version, source, batch_size, labelled_manifest,
                                   SHARD_IMAGES]).encode())
    for it in items:
        h.update(f"{it.image}\0{it.location}\0{','.join(it.skip)}\n".encode())
    return h.hexdigest()[:16]


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({c: _TYPES.get(c, "string") for c in columns})


def tag_shard(job: tuple[ChampionRef, list[ImageItem], ImageParams, str | None, int, str, int]) -> int:
    """Tag one shard batch by batch and write its part: tags, review and rejects parquet files in a folder
    renamed into place when complete, so a part that exists is whole and a rerun skips it. Returns the
    images it tagged (0: the part was already there)."""
    champion, items, limits, labelled, batch_size, part, threads = job
    if os.path.isdir(part):
        return 0
    if threads:  # a pool worker: its share of the cores, not all of them
        torch.set_num_threads(threads)
    done = [tag_batch(champion, chunk, limits, labelled) for chunk in batches(items, batch_size)]
    tmp = Path(f"{part}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _table([r for b in done for r in b.rows], COLUMNS).to_parquet(tmp / "tags.parquet", index=False)
    _table([r for b in done for r in b.review], REVIEW_COLUMNS).to_parquet(tmp / "review.parquet", index=False)
    _table([r for b in done for r in b.rejects], ["image", "reason"]).to_parquet(tmp / "rejects.parquet", index=False)
    os.replace(tmp, part)
    return len(items)


def tag_parts(champion: ChampionRef, source: str, items: list[ImageItem], limits: ImageParams,
              labelled_manifest: str | None, batch_size: int, out_dir: str, workers: int,
              dask_address: str = "") -> TagParts:
    """Tag `items` in shards of SHARD_IMAGES on `workers` processes (0: every core), or with `dask_address`
    on that Dask cluster's workers (tasks.cluster), each shard's answers written as a part under
    `<out_dir>/.parts/<run key>/`; parts already written by a killed run with the same key are kept, not
    redone. Progress: a line with the images tagged, rate and ETA."""
    log = task_logger()
    key = run_key(champion, source, items, batch_size, labelled_manifest)
    folder = Path(out_dir) / ".parts" / key
    folder.mkdir(parents=True, exist_ok=True)
    shards = [items[i:i + SHARD_IMAGES] for i in range(0, len(items), SHARD_IMAGES)]
    names = [str(folder / f"part-{k:06d}") for k in range(len(shards))]
    todo = [k for k, name in enumerate(names) if not os.path.isdir(name)]
    reused = len(shards) - len(todo)
    if reused:
        log.info("resuming tagging run %s: %d of %d parts already written", key, reused, len(shards))
    n = 0 if dask_address else resolve_workers(workers, len(todo), parallel_from=2)
    threads = max(1, cpu_count() // n) if n > 1 else 0  # on Dask: the worker's own setting
    jobs = [(champion, shards[k], limits, labelled_manifest, batch_size, names[k], threads) for k in todo]
    meter = Meter("tagging", sum(len(shards[k]) for k in todo), log.info)
    if dask_address:
        log.info("tagging %d parts on the Dask cluster at %s", len(jobs), dask_address)
        dask_map(tag_shard, jobs, dask_address, "tag-shard", meter=meter, count=lambda images: images)
    else:
        pmap(tag_shard, jobs, workers, parallel_from=2, meter=meter, count=lambda images: images)
    meter.finish()
    return TagParts(str(folder), key, len(shards), len(items), reused)


def write_tags(parts: TagParts, out_dir: str) -> dict[str, Any]:
    """tags.parquet and tags.csv (the accepted tags), review.csv (the rest, least sure first: smallest
    margin between the top two classes) and rejects.csv in `out_dir`, from the run's parts (the tags are
    streamed part by part; each file is written whole, then renamed into place); then the parts go.
    Returns the paths ("outputs") and the row counts ("rows", "review", "rejected")."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = [Path(parts.folder) / f"part-{k:06d}" for k in range(parts.parts)]
    paths = {"parquet": out / "tags.parquet", "csv": out / "tags.csv", "review": out / "review.csv",
             "rejects": out / "rejects.csv"}
    tmp = {k: p.with_name(f".{p.name}.tmp") for k, p in paths.items()}
    writer, rows = None, 0
    with open(tmp["csv"], "w", newline="") as csv_out:
        csv_out.write(",".join(COLUMNS) + "\n")
        for folder in folders:
            table = pq.read_table(folder / "tags.parquet")
            writer = writer or pq.ParquetWriter(tmp["parquet"], table.schema)
            writer.write_table(table)
            rows += table.num_rows
            table.to_pandas().to_csv(csv_out, index=False, header=False)
    if writer is None:
        _table([], COLUMNS).to_parquet(tmp["parquet"], index=False)
    else:
        writer.close()
    review = pd.concat([pd.read_parquet(f / "review.parquet") for f in folders] or [_table([], REVIEW_COLUMNS)])
    review.sort_values(["margin", "probability", "image", "attribute"], kind="stable").to_csv(tmp["review"], index=False)
    rejects = pd.concat([pd.read_parquet(f / "rejects.parquet") for f in folders] or [_table([], ["image", "reason"])])
    rejects.to_csv(tmp["rejects"], index=False)
    for kind, path in paths.items():
        os.replace(tmp[kind], path)
    shutil.rmtree(parts.folder, ignore_errors=True)
    return {"outputs": {k: str(v) for k, v in paths.items()}, "rows": rows, "review": len(review),
            "rejected": len(rejects)}


fetch_champion_task = task(fetch_champion, name="fetch-champion")
list_catalogue_task = task(list_catalogue, name="list-catalogue")
tag_parts_task = task(tag_parts, name="tag-parts")
write_tags_task = task(write_tags, name="write-tags")
