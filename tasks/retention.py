"""Retention: bounded storage for a year of nightly runs (`progattr retention`; each nightly run
applies it to its article when it ends). The policy is params `retention:`.

What goes:
- MLflow, per article: the stage checkpoints (`checkpoint/`, training and branch-add stages) and the
  baseline models (`model/`) of all but the newest `keep_runs` trainings (a training is one
  `train_key`, or one `baseline_key` for baselines). Such a run is tagged `progattr.status=pruned`
  before its files go, so a resume or a rerun with the same key never counts it as done (it trains
  again); its metrics and tags stay, and `progattr.pruned_bytes` records what went.
- Pretraining: the per-epoch checkpoint of a completed pretraining run (its backbone stays in
  `model/`), and that of an interrupted one whose key has since completed.
- The decode cache (`data.cache`), down to `decode_cache_gb` (progattr_core.data.arrays.trim_cache).
- The DVC cache: `dvc gc --workspace` (`dvc_cache: workspace`), only when a DVC remote is configured:
  every ingest pushes its data version there, so the remote keeps the versions a rebuild needs.
- In a DVC project, the parts of an article's import folder (progattr_core/data/import_files.py) that
  neither the folder's index nor the article's ingested manifest names any more: every image in them was
  changed or removed since. Ingest tracked each part a data version names, so the DVC cache (and the
  remote) keeps them for the older versions; parts newer than the newest named one (an import running
  now) are left alone.

What never goes: a registered version's model files (they live in its flow run, which this never
touches); the checkpoints and baseline models of the versions that hold an alias (champion,
challenger, previous); anything of a run still RUNNING; the newest training of each article (what a
killed run resumes from); the decode-cache entries of the current manifests; the current data version.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from prefect import task

from progattr_core.data.arrays import trim_cache
from progattr_core.data.import_files import INDEX, PARTS, is_partitioned, parts_named
from progattr_core.data.manifest import relative_inside
from progattr_core.pretrain import ARTICLE as PRETRAIN
from tasks import dvc_store
from tasks.context import PipelineContext, task_logger
from tasks.pretrain import CHECKPOINT_FOLDER as PRETRAIN_CHECKPOINT
from tasks.training import CHECKPOINT, MODEL
from tracking.registry import Registry, model_name
from tracking.store import COMPLETED, TAG, Store

PRUNED = "pruned"
# (run kind, the tag that names its training, the folder that holds its files)
_GROUPS = (("stage", "train_key", str(Path(CHECKPOINT).parent)),
           ("branch_stage", "train_key", str(Path(CHECKPOINT).parent)),
           ("baseline", "baseline_key", str(Path(MODEL).parent)))


def apply_retention(ctx: PipelineContext, articles: list[str], dry_run: bool = False) -> dict[str, Any]:
    """Apply params `retention:` to these articles' MLflow runs, to pretraining, the decode cache and
    the DVC cache; what was (or, with `dry_run`, would be) deleted, and how many bytes."""
    log = task_logger()
    store = Store.of(ctx.store)
    report: dict[str, Any] = {"dry_run": dry_run, "articles": {}}
    for article in articles:
        report["articles"][article] = _prune_article(ctx, store, article, dry_run)
    report["pretrain"] = _prune_pretraining(store, dry_run)
    report["superseded_parts"] = {article: _prune_parts(ctx, article, dry_run) for article in articles}
    report["decode_cache"] = _trim_decode_cache(ctx, dry_run)
    report["dvc_cache"] = _gc_dvc(ctx, dry_run)
    mlflow_bytes = sum(a["freed_bytes"] for a in report["articles"].values()) + report["pretrain"]["freed_bytes"]
    parts_bytes = sum(r.get("freed_bytes", 0) for r in report["superseded_parts"].values())
    report["freed_bytes"] = (mlflow_bytes + report["decode_cache"].get("deleted_bytes", 0)
                             + report["dvc_cache"].get("freed_bytes", 0) + parts_bytes)
    verb = "would free" if dry_run else "freed"
    log.info("retention %s %s: MLflow %s (%s), superseded import parts %s, decode cache %s, DVC cache %s", verb,
             _mb(report["freed_bytes"]), _mb(mlflow_bytes),
             "; ".join(f"{a}: {len(r['pruned'])} runs" for a, r in report["articles"].items()), _mb(parts_bytes),
             _mb(report["decode_cache"].get("deleted_bytes", 0)),
             report["dvc_cache"].get("skipped") or _mb(report["dvc_cache"].get("freed_bytes", 0)))
    return report


def _prune_article(ctx: PipelineContext, store: Store, article: str, dry_run: bool) -> dict[str, Any]:
    keep_n = ctx.params().retention.keep_runs
    aliased = _aliased_keys(Registry.of(ctx.store), article)
    pruned, kept = [], set()
    for kind, key_tag, folder in _GROUPS:
        runs = store.search({"kind": kind, "article": article})
        keep = set(_newest_keys(runs, key_tag, keep_n)) | aliased
        keep |= {_tag(r, key_tag) for r in runs if r.info.status == "RUNNING"}
        kept |= keep & {_tag(r, key_tag) for r in runs}
        for run in runs:
            if _tag(run, key_tag) not in keep and not _tag(run, "pruned_bytes"):
                pruned += _prune(store, run, folder, f"{kind} {run.info.run_name}",
                                 dry_run, mark=True)
    return {"pruned": pruned, "freed_bytes": sum(p["bytes"] for p in pruned), "kept_keys": sorted(kept - {""})}


def _prune_pretraining(store: Store, dry_run: bool) -> dict[str, Any]:
    """Completed pretraining runs keep their backbone (`model/`) and lose the per-epoch checkpoint;
    an interrupted run keeps its checkpoint (the resume source) until its key completes."""
    runs = store.search({"kind": "pretrain", "article": PRETRAIN})
    done = {_tag(r, "pretrain_key") for r in runs if _completed(r)}
    pruned = []
    for run in runs:
        if run.info.status == "RUNNING" or _tag(run, "pruned_bytes") or _tag(run, "pretrain_key") not in done:
            continue
        pruned += _prune(store, run, PRETRAIN_CHECKPOINT, f"pretrain {run.info.run_name}", dry_run,
                         mark=not _completed(run))
    return {"pruned": pruned, "freed_bytes": sum(p["bytes"] for p in pruned)}


def _prune(store: Store, run: Run, folder: str, what: str, dry_run: bool, mark: bool) -> list[dict[str, Any]]:
    """Delete one run's `folder`. `mark` tags the run pruned first: a resume that lists it in
    between finds it not done, never a half-deleted checkpoint."""
    run_id = run.info.run_id
    size = store.artifact_bytes(run_id, folder)
    if size == 0:
        return []
    if not dry_run:
        if mark:
            store.set_tags(run_id, {"status": PRUNED})
        store.delete_artifacts(run_id, folder)
        store.set_tags(run_id, {"pruned_bytes": size})
    return [{"run_id": run_id, "what": what, "artifact": folder, "bytes": size}]


def _aliased_keys(registry: Registry, article: str) -> set[str]:
    """The training and baseline keys of the versions holding an alias (champion, challenger, ...)."""
    name = model_name(article)
    keys = set()
    for version in set(registry.aliases(name).values()):
        mv = registry.version(name, version)
        if mv is not None:
            keys |= {mv.tags.get(TAG + "train_key", ""), mv.tags.get(TAG + "baseline_key", "")}
    return keys - {""}


def _newest_keys(runs: list[Run], key_tag: str, n: int) -> list[str]:
    started: dict[str, int] = {}
    for run in runs:
        key = _tag(run, key_tag)
        if key:
            started[key] = max(started.get(key, 0), run.info.start_time or 0)
    return sorted(started, key=started.__getitem__, reverse=True)[:n]


def _trim_decode_cache(ctx: PipelineContext, dry_run: bool) -> dict[str, Any]:
    import pandas as pd

    p = ctx.params()
    cache = ctx.path(p.data.cache)
    if p.retention.decode_cache_gb == 0 or not cache.is_dir():
        return {"skipped": "no cap (retention.decode_cache_gb: 0)" if cache.is_dir() else "no decode cache yet"}
    keep: set[str] = set()
    for manifest in sorted(ctx.path(p.pipeline.outputs).glob("*/manifest.parquet")):
        keep |= set(pd.read_parquet(manifest, columns=["sha256"])["sha256"])
    return trim_cache(cache, keep, int(p.retention.decode_cache_gb * 2**30), dry_run)


def _prune_parts(ctx: PipelineContext, article: str, dry_run: bool) -> dict[str, Any]:
    """The superseded parts of the article's import folder, deleted with their DVC pointers (module doc)."""
    import pandas as pd

    ref = ctx.path(ctx.params().pipeline.outputs) / article / "data_version.json"
    if not ref.is_file():
        return {"skipped": "not ingested yet"}
    ingested = json.loads(ref.read_text())
    folder = ctx.path(ingested["raw_dir"])
    if ingested.get("layout") != "parts" or not is_partitioned(folder):
        return {"skipped": "not an import folder"}
    if not dvc_store.is_repo(ctx.path(".")):
        return {"skipped": "not a DVC repository: older parts may hold the only copy of older data versions"}
    inside = relative_inside(folder, ctx.path(ctx.params().data.root))
    if inside is None:  # ingest refuses such a folder; a data root changed since is read as "cannot tell"
        return {"skipped": f"{folder} is not under data.root"}
    prefix = f"{inside}/"
    named = set(parts_named(pd.read_parquet(folder / INDEX / "manifest.parquet", columns=["path"])["path"]))
    named |= set(parts_named(pd.read_parquet(ctx.path(ingested["manifest"]), columns=["path"])["path"]
                             .str.removeprefix(prefix)))
    newest = max(named, default="")
    pruned = [{"part": d.name, "bytes": _folder_bytes(d)} for d in sorted((folder / PARTS).iterdir())
              if d.is_dir() and d.name not in named and d.name < newest]
    if not dry_run:
        for p in pruned:
            shutil.rmtree(folder / PARTS / p["part"])
            (folder / PARTS / f"{p['part']}.dvc").unlink(missing_ok=True)
    return {"pruned": pruned, "freed_bytes": sum(p["bytes"] for p in pruned)}


def _gc_dvc(ctx: PipelineContext, dry_run: bool) -> dict[str, Any]:
    root = ctx.path(".")
    if ctx.params().retention.dvc_cache == "keep":
        return {"skipped": "retention.dvc_cache is keep"}
    if not dvc_store.is_repo(root):
        return {"skipped": "not a DVC repository"}
    if not dvc_store.has_remote(root):
        return {"skipped": "no DVC remote: the local cache may hold the only copy of older data versions"}
    cache = Path(dvc_store.run_dvc(root, "cache", "dir", timeout=60).strip())
    before = _folder_bytes(cache)
    if dry_run:
        return {"would_run": "dvc gc --workspace --force", "cache_bytes": before}
    dvc_store.run_dvc(root, "gc", "--workspace", "--force", "-q")
    return {"cache_bytes": before, "freed_bytes": before - _folder_bytes(cache)}


def _folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _tag(run: Run, name: str) -> str:
    return run.data.tags.get(TAG + name, "")


def _completed(run: Run) -> bool:
    return run.info.status == "FINISHED" and _tag(run, "status") == COMPLETED


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


retention_task = task(apply_retention, name="retention")
