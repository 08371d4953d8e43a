"""Pretraining a Base as Prefect tasks (flows/pretrain.py, `progattr pretrain`).

import (the densely labelled catalogue minus the evaluated article types, progattr_core.pretrain)
-> train the masked multi-task network, checkpointing every epoch to MLflow -> register the result
as a version of `progattr-backbone` with its lineage (every image's content hash beside the model,
and tags: data version, params digest, article types and images seen, what was excluded).

Resume works like the training flow's: the run is keyed by (data version, the params it depends on,
init, compute), never by the flow run. A completed run with the key is reused (nothing trains); a
killed one leaves its last epoch's checkpoint (weights, optimiser, LR schedule, shuffling state) in
MLflow, and the next run continues from it to the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from prefect import task

from progattr_core.baselines import multilabel_spec
from progattr_core.data.arrays import load_images
from progattr_core.data.importers import ImportLog
from progattr_core.data.kaggle import read_styles
from progattr_core.data.manifest import read_manifest, relative_inside, write_manifest
from progattr_core.model import resolve_device
from progattr_core.model_file import load_fit_state, save_fit_state, save_model
from progattr_core.model_init import ModelInit
from progattr_core.pretrain import (
    ARTICLE,
    catalogue_vocabularies,
    import_catalogue,
    lineage,
    lineage_path,
    pretraining_params,
    sample,
    write_lineage,
)
from progattr_core.train import LabelledImages, fit
from tasks.context import PipelineContext, completed_run, git_commit, git_dirty, task_logger, training_key
from tracking.registry import BACKBONE, MODEL_FILE, MODEL_FOLDER, Registry
from tracking.store import TAG, Store

CHECKPOINT_FOLDER, CHECKPOINT_FILE = "checkpoint", "epoch.pt"
# train: fields the pretraining fit reads (the rest of `train:` is the progressive schedule's; all of
# `optimizer:` applies, and `compute:` through the key's suffix)
FIT_FIELDS = ("batch_size", "select_best_epoch", "augment", "class_weighting")


@dataclass(frozen=True)
class PretrainData:
    """The imported pretraining catalogue: its manifest, content version and what it holds."""

    manifest: str                  # relative to the project root
    data_root: str
    data_version: str              # sha256 of every row's image hash, split and labels
    source: str
    n_images: int
    splits: dict[str, int]
    article_types: list[str]       # the catalogue's article types it kept (all but the excluded ones)
    vocab: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PretrainedRef:
    run_id: str
    key: str
    trained_now: bool
    resumed_from_epoch: int        # 0: trained from the start (or reused)
    seconds: float


def pretrain_dir(ctx: PipelineContext) -> Path:
    return ctx.path(ctx.params().pipeline.outputs) / ARTICLE


def import_pretraining(ctx: PipelineContext) -> PretrainData:
    """Import the `pretrain.source` catalogue (Kaggle layout) minus `pretrain.exclude_article_types`
    into the data root, sample `pretrain.max_images`, and write its manifest to outputs/pretrain/."""
    log = task_logger()
    p = ctx.params()
    source = ctx.path(p.pretrain.source)
    styles = source / "styles.csv"
    if not styles.is_file():
        from progattr_core.errors import DataValidationError

        raise DataValidationError(f"pretrain.source {source}: no styles.csv there (a Kaggle Fashion Product "
                                  f"Images folder: styles.csv + images/); set pretrain.source or pass --source")
    vocab = catalogue_vocabularies(styles, p)
    log.info("heads: %s", ", ".join(f"{a} ({len(v)} classes)" for a, v in vocab.items()))
    excluded = set(p.pretrain.exclude_article_types)
    kept = sorted({r["articleType"] for _, r in read_styles(styles, ImportLog())} - excluded)
    root = ctx.path(p.data.root)
    dest = relative_inside(ctx.path(p.data.raw) / ARTICLE, root) or f"raw/{ARTICLE}"
    log.info("importing %s (%d article types; %s excluded): decoding is cached, the first time takes minutes",
             source, len(kept), sorted(excluded))
    result = import_catalogue(pretraining_params(p, vocab), source, root, dest)
    manifest = sample(result.manifest, p.pretrain.max_images, p.seed)
    path = write_manifest(manifest, pretrain_dir(ctx) / "manifest.parquet")
    content = manifest[["sha256", "split", *vocab]].astype(str).to_csv(index=False)
    version = hashlib.sha256(content.encode()).hexdigest()[:16]
    splits = {str(k): int(v) for k, v in manifest["split"].value_counts().items()}
    log.info("pretraining catalogue: %d of %d images, splits %s, data version %s", len(manifest),
             len(result.manifest), splits, version)
    return PretrainData(ctx.relative(path), ctx.relative(root), version, str(p.pretrain.source), len(manifest),
                        splits, kept, {a: list(v) for a, v in vocab.items()})


def pretrain_key(ctx: PipelineContext, data: PretrainData) -> str:
    """What the backbone's weights depend on: the data version, `seed`, `model`, `pretrain`, the fit's
    `train:` fields, the init and the compute (the training key's rules)."""
    p = ctx.params()
    fit_params = json.dumps({k: getattr(p.train, k) for k in FIT_FIELDS}, default=str, sort_keys=True)
    return training_key(p, "pretrain", data.data_version, p.digest("seed", "model", "pretrain", "optimizer"), fit_params)


def _split(ctx: PipelineContext, data: PretrainData, split: str) -> LabelledImages:
    p = ctx.params()
    taxonomy = {**p.taxonomy, ARTICLE: data.vocab}
    df = read_manifest(ctx.path(data.manifest), taxonomy)
    x, y, _ = load_images(df, ctx.path(data.data_root), ctx.path(p.data.cache), p.model.image_size,
                          list(data.vocab), split, workers=p.data.workers, say=task_logger().info)
    return LabelledImages.from_arrays(x, y, list(data.vocab), data.vocab)


def _resume_point(store: Store, tags: dict[str, Any], tmp: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The last epoch checkpoint an interrupted run with these tags left, and that run's id."""
    for run in reversed(store.search(tags)):
        if int(run.data.tags.get(TAG + "epochs_done", "0")) > 0:
            path = store.download(run.info.run_id, f"{CHECKPOINT_FOLDER}/{CHECKPOINT_FILE}", tmp)
            return load_fit_state(path), run.info.run_id
    return None, None


def train_backbone(ctx: PipelineContext, data: PretrainData) -> PretrainedRef:
    """Train (or reuse, or resume) the masked multi-task network on the pretraining catalogue; the MLflow
    run holds a checkpoint per epoch, the loss and validation curves, and finally the backbone file
    with its lineage in `model/` (what a `progattr-backbone` version points at)."""
    log = task_logger()
    p = ctx.params()
    store = Store.of(ctx.store)
    key = pretrain_key(ctx, data)
    tags = {"kind": "pretrain", "pretrain_key": key}
    done = completed_run(store, tags, f"pretraining {key}")
    if done is not None:
        return PretrainedRef(done.info.run_id, key, False, 0, done.data.metrics.get("seconds", 0.0))
    device = resolve_device(p.compute.device)
    with tempfile.TemporaryDirectory(prefix="progattr-pretrain-") as tmp:
        tmp = Path(tmp)
        resume, resumed_run = _resume_point(store, tags, tmp / "resume")
        train, val = _split(ctx, data, "train"), _split(ctx, data, "val")
        model, spec = multilabel_spec(p, train, True, attributes=list(data.vocab), epochs=p.pretrain.epochs,
                                      name=ARTICLE)
        model.to(device)
        first = resume["epoch"] if resume else 0
        run_tags = {**tags, "data_version": data.data_version, "article": ARTICLE}
        if resume:
            run_tags["resumed_from"] = f"{resumed_run} epoch {first}"
            log.info("resuming pretraining from epoch %d/%d of run %s", first, spec.epochs, resumed_run)
        with store.run(f"pretrain-{key}", run_tags, parent_run_id=ctx.flow_run_id or None) as run_id:
            store.log_params(run_id, {"pretrain_key": key, "n_train": len(train), "n_val": len(val),
                                      "epochs": spec.epochs, "heads": ", ".join(data.vocab)})

            def checkpoint(epoch: int, state: dict[str, Any]) -> None:
                result = state["result"]
                metrics = {"loss": result["epoch_losses"][-1]}
                if result["val_scores"]:
                    metrics["val_mean_head_accuracy"] = result["val_scores"][-1]
                store.log_metrics(run_id, metrics, step=epoch)
                save_fit_state(tmp / CHECKPOINT_FOLDER / CHECKPOINT_FILE, state)
                store.log_artifacts(run_id, tmp / CHECKPOINT_FOLDER, CHECKPOINT_FOLDER)
                store.set_tags(run_id, {"epochs_done": state["epoch"]})
                log.info("pretraining epoch %d/%d checkpointed", state["epoch"], spec.epochs)

            result = fit(model, spec, train, p, device, val if len(val) else None, log.info,
                         on_epoch_end=checkpoint, resume=resume)
            out = save_model(model.to(torch.device("cpu")), tmp / MODEL_FOLDER / MODEL_FILE)
            manifest = read_manifest(ctx.path(data.manifest))
            vocab = {a: tuple(v) for a, v in data.vocab.items()}
            write_lineage(out, {**lineage(manifest, p, data.source, vocab), "seconds": round(result.seconds, 1),
                                "data_version": data.data_version, "pretrain_key": key,
                                "article_types": data.article_types})
            store.log_metrics(run_id, {"seconds": result.seconds, "image_passes": result.image_passes,
                                       "n_images": len(train)})
            store.log_artifacts(run_id, out.parent, MODEL_FOLDER)
    log.info("backbone trained in %.0fs (MLflow run %s)", result.seconds, run_id)
    return PretrainedRef(run_id, key, True, first, result.seconds)


def register_pretrained(ctx: PipelineContext, data: PretrainData, ref: PretrainedRef, out: str | None) -> str:
    """The run's backbone as a version of `progattr-backbone` (the existing one if this run was
    registered before: a rerun on the same data and params registers nothing new), and a copy of it
    and its lineage at `out` if given. Returns the version."""
    log = task_logger()
    p = ctx.params()
    registry = Registry.of(ctx.store)
    existing = registry.versions_with_tags(BACKBONE, {"pretrain_key": ref.key})
    with tempfile.TemporaryDirectory(prefix="progattr-backbone-") as tmp:
        local = Store.of(ctx.store).download(ref.run_id, f"{MODEL_FOLDER}/{MODEL_FILE}", tmp)
        Store.of(ctx.store).download(ref.run_id, f"{MODEL_FOLDER}/{lineage_path(MODEL_FILE).name}", tmp)
        if existing:
            version = str(existing[-1].version)
            log.info("%s version %s already holds this backbone (pretraining %s)", BACKBONE, version, ref.key)
        else:
            types = ", ".join(data.article_types)
            tags = {"source": data.source, "data_version": data.data_version, "pretrain_key": ref.key,
                    "params_digest": p.digest(), "n_images": data.n_images, "n_train": data.splits.get("train", 0),
                    "n_article_types": len(data.article_types),
                    "article_types": types if len(types) <= 4000 else types[:3990] + " ...",
                    "excluded_article_types": ", ".join(p.pretrain.exclude_article_types),
                    "heads": ", ".join(data.vocab), "arch": p.model.arch, "image_size": p.model.image_size,
                    "epochs": p.pretrain.epochs, "model_init_identity": ModelInit.parse(str(local)).identity(),
                    "git_commit": git_commit(ctx.root), "git_dirty": git_dirty(ctx.root),
                    "gate": "none (a backbone: no gates)"}
            version = registry.register(BACKBONE, ref.run_id, tags)
            log.info("registered %s version %s", BACKBONE, version)
        if out:
            target = ctx.path(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
            shutil.copyfile(lineage_path(local), lineage_path(target))
    return version


def summary(data: PretrainData, ref: PretrainedRef, version: str) -> dict[str, Any]:
    return {"data": asdict(data) | {"vocab": {a: len(v) for a, v in data.vocab.items()}}, "run": asdict(ref),
            "version": version, "uri": f"models:/{BACKBONE}/{version}"}


import_task = task(import_pretraining, name="pretrain-import")
train_task = task(train_backbone, name="pretrain-train")
register_task = task(register_pretrained, name="pretrain-register")
