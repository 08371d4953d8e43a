"""Progressive stages and baselines as Prefect tasks, each checkpointed to MLflow.

A stage is keyed by (train key, stage index), never by the flow run: if the flow dies in stage k,
the next run with the same data version and params finds stages 0..k-1 completed in MLflow (the
only resume source; Prefect caches nothing), skips them, and starts stage k from the checkpoint of
stage k-1. The core guarantees that this gives
the same weights as an uninterrupted run. Tasks exchange run ids and paths, never modules.

The checkpoint is the core's stage checkpoint (weights + the model's self-description + the stage).
Each stage builds a fresh optimiser (the paper's stages have their own learning rates), so no
optimiser state needs to survive a stage boundary.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from prefect import task
from torch import nn

from progattr_core.baselines import train_multilabel, train_one_individual
from progattr_core.data.arrays import load_images
from progattr_core.data.manifest import read_manifest
from progattr_core.distill import teacher_probabilities
from progattr_core.errors import ConfigError
from progattr_core.model import build_model, resolve_device
from progattr_core.model_file import load_checkpoint, load_model, save_checkpoint, save_model
from progattr_core.schedule import Stage, build_schedule
from progattr_core.stages import train_stage
from progattr_core.train import FitResult, LabelledImages, accuracy_on
from tasks.context import DataRef, PipelineContext, baseline_key, completed_run, task_logger, train_key
from tracking.store import Store

CHECKPOINT = "checkpoint/checkpoint.pt"
MODEL = "model/model.pt"


@dataclass(frozen=True)
class TrainedRef:
    """A stage checkpoint or a baseline model in MLflow, and whether this run trained it."""

    kind: str                      # "stage" | "baseline"
    name: str                      # stage name, or baseline method[:attribute]
    run_id: str
    artifact: str                  # artifact path inside the run
    trained_now: bool              # by this call (False: reused from a completed MLflow run)
    seconds: float


def load_split(ctx: PipelineContext, data: DataRef, split: str) -> LabelledImages:
    """One split of the article's manifest as uint8 tensors (through the decode cache)."""
    params = ctx.params()
    vocab = params.attributes(ctx.article)
    df = read_manifest(ctx.path(data.manifest), params.taxonomy)
    x, y, _ = load_images(df, ctx.path(data.data_root), ctx.path(params.data.cache), params.model.image_size,
                          list(vocab), split, workers=params.data.workers, say=task_logger().info)
    return LabelledImages.from_arrays(x, y, list(vocab), vocab)


def _fit_metrics(result: FitResult) -> dict[str, float]:
    return {"seconds": result.seconds, "image_passes": result.image_passes, "n_images": result.n_images}


def train_checkpointed(ctx: PipelineContext, data: DataRef, stage: Stage, tags: dict[str, object], run_name: str,
                       run_tags: dict[str, str], previous: TrainedRef | None, initial: Callable[[], nn.Module],
                       teachers: Callable[[LabelledImages], Mapping[str, np.ndarray]] | None = None) -> TrainedRef:
    """The one stage runner (training and branch-add flows): reuse the completed MLflow run with `tags`,
    or train `stage` from `previous`'s checkpoint (the first stage: from `initial()`) and log its
    loss per epoch, validation accuracy and checkpoint. MLflow is the only resume source. `teachers`:
    the training split -> teacher probabilities on it, for a distilled stage (called only to train)."""
    log = task_logger()
    store = Store.of(ctx.store)
    params = ctx.params()
    done = completed_run(store, tags, run_name)
    if done is not None:
        return TrainedRef("stage", stage.name, done.info.run_id, CHECKPOINT, False, done.data.metrics.get("seconds", 0.0))
    device = resolve_device(params.compute.device)
    with tempfile.TemporaryDirectory(prefix="progattr-stage-") as tmp:
        model = initial() if previous is None else load_checkpoint(store.download(previous.run_id, previous.artifact, tmp))[0]
        points = {a: p for a, p in params.model.split_points.items() if a in stage.attributes}
        if points:  # a Branch this stage adds starts at its own split point (a checkpoint holds only added ones)
            model.plan_split_points(points)
        train, val = load_split(ctx, data, "train"), load_split(ctx, data, "val")
        all_tags = {**tags, "stage_name": stage.name, "stage_kind": stage.kind, "article": ctx.article,
                    "data_version": data.data_version, **run_tags}
        # the run counts as completed only once it ends, after the checkpoint's upload
        with store.run(run_name, all_tags, parent_run_id=ctx.flow_run_id or None) as run_id:
            store.log_params(run_id, {f"stage.{k}": v for k, v in stage.to_dict().items()})
            targets = None if teachers is None else teachers(train)
            result = train_stage(model, stage, train, params, params.seed, device, val, log.info, targets)
            for epoch, loss in enumerate(result.epoch_losses):
                store.log_metrics(run_id, {"loss": loss}, step=epoch)
            start = time.perf_counter()
            val_acc = accuracy_on(model, val, list(model.classes), device) if len(val) else {}
            store.log_metrics(run_id, {**_fit_metrics(result), "val_seconds": time.perf_counter() - start,
                                       **{f"val_accuracy.{a}": v for a, v in val_acc.items()}})
            checkpoint = Path(tmp) / "out" / Path(CHECKPOINT).name
            save_checkpoint(checkpoint, model.cpu(), stage, result)
            store.log_artifacts(run_id, checkpoint.parent, str(Path(CHECKPOINT).parent))
    log.info("%s trained in %.1fs (run %s), val accuracy %s", run_name, result.seconds, run_id,
             {a: round(v, 3) for a, v in val_acc.items()})
    return TrainedRef("stage", stage.name, run_id, CHECKPOINT, True, result.seconds)


def run_stage(ctx: PipelineContext, data: DataRef, key: str, index: int, previous: TrainedRef | None) -> TrainedRef:
    """Stage `index` of the article's progressive schedule; with `train.distill: individual`, distilled from
    this data version's individual models (the baselines, trained first)."""
    params = ctx.params()
    stage = build_schedule(params, ctx.article)[index]
    targets = _teacher_targets(ctx, data) if params.train.distill == "individual" else None
    return train_checkpointed(ctx, data, stage, {"kind": "stage", "train_key": key, "stage_index": index},
                              f"stage-{index}-{stage.name}", {}, previous, lambda: build_model(params.model, params.seed),
                              targets)


def train_progressive(ctx: PipelineContext, data: DataRef, run: Callable[..., TrainedRef] = run_stage
                      ) -> list[TrainedRef]:
    """The article's progressive schedule, each stage from the previous one's checkpoint: `run` is
    run_stage (`progattr pipeline train`) or the flow's task of it (one Prefect task per stage)."""
    key = train_key(ctx, data)
    stages: list[TrainedRef] = []
    for stage in build_schedule(ctx.params(), ctx.article):
        stages.append(run(ctx, data, key, stage.index, stages[-1] if stages else None))
    return stages


def _teacher_targets(ctx: PipelineContext, data: DataRef) -> Callable[[LabelledImages], Mapping[str, np.ndarray]]:
    """The completed individual model of every attribute under this run's baseline key (checked now: the
    key is in the stages' training key), as a function of the training split that fetches them and
    returns their probabilities on it (called only when a stage trains)."""
    store, attributes = Store.of(ctx.store), list(ctx.params().attributes(ctx.article))
    bkey = baseline_key(ctx, data)
    runs = {a: store.find_completed({"kind": "baseline", "baseline_key": bkey, "method": "individual", "attribute": a})
            for a in attributes}
    missing = [a for a, run in runs.items() if run is None]
    if missing:
        raise ConfigError(f"train.distill=individual: no individual model (teacher) of {missing} for {ctx.article} "
                          f"under baseline key {bkey}: the baselines train first (`progattr pipeline run` does "
                          "this; step by step, run `progattr pipeline baselines` before `progattr pipeline train`)")

    def targets(train: LabelledImages) -> Mapping[str, np.ndarray]:
        models = {a: load_model(fetch(store, run.info.run_id, MODEL, baseline_path(ctx, f"individual:{a}")))
                  for a, run in runs.items()}
        task_logger().info("distilling from the individual models (MLflow runs %s)",
                           ", ".join(run.info.run_id for run in runs.values()))
        return teacher_probabilities(models, train.images, resolve_device(ctx.params().compute.device))

    return targets


def export_progressive(ctx: PipelineContext, stages: list[TrainedRef]) -> str:
    """The last stage's checkpoint as a plain saved model (the registry format), plus the stage list,
    in outputs/<article>/progressive/."""
    store = Store.of(ctx.store)
    with tempfile.TemporaryDirectory(prefix="progattr-final-") as tmp:
        model, _ = load_checkpoint(store.download(stages[-1].run_id, stages[-1].artifact, tmp))
    write_refs(ctx.outputs("progressive", "stages.json"), stages)
    return str(save_model(model, ctx.outputs("progressive", "model.pt")))


def write_refs(path: Path, refs: list[TrainedRef]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in refs], indent=1))


def read_refs(path: Path) -> list[TrainedRef]:
    return [TrainedRef(**r) for r in json.loads(Path(path).read_text())]


def run_baseline(ctx: PipelineContext, data: DataRef, key: str, method: str, attribute: str | None) -> TrainedRef:
    """One baseline model (a method, or one attribute of `individual`), reused from MLflow if done."""
    log = task_logger()
    store = Store.of(ctx.store)
    params = ctx.params()
    name = f"{method}:{attribute}" if attribute else method
    tags = {"kind": "baseline", "baseline_key": key, "method": method, "attribute": attribute or "all"}
    local = baseline_path(ctx, name)
    done = completed_run(store, tags, f"baseline {name}")
    if done is not None:
        fetch(store, done.info.run_id, MODEL, local)
        return TrainedRef("baseline", name, done.info.run_id, MODEL, False, done.data.metrics.get("seconds", 0.0))
    device = resolve_device(params.compute.device)
    train, val = load_split(ctx, data, "train"), load_split(ctx, data, "val")
    with store.run(f"baseline-{name}", {**tags, "article": ctx.article, "data_version": data.data_version},
                   parent_run_id=ctx.flow_run_id or None) as run_id:
        if method == "individual":
            model, result = train_one_individual(params, train, attribute, device, val, log.info)
        else:
            model, result = train_multilabel(params, train, method == "multilabel_masked", device, val, log.info)
        store.log_metrics(run_id, _fit_metrics(result))
        with tempfile.TemporaryDirectory(prefix="progattr-baseline-") as tmp:
            saved = save_model(model.cpu(), Path(tmp) / "model.pt")
            store.log_artifacts(run_id, saved, "model")
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved, local)
    log.info("baseline %s trained in %.1fs (run %s)", name, result.seconds, run_id)
    return TrainedRef("baseline", name, run_id, MODEL, True, result.seconds)


def baseline_path(ctx: PipelineContext, name: str) -> Path:
    return ctx.outputs("baselines", f"{name.replace(':', '-')}.pt")


def baseline_jobs(ctx: PipelineContext) -> list[tuple[str, str | None]]:
    """(method, attribute) per baseline model: `individual` is one independent model per attribute."""
    params = ctx.params()
    jobs: list[tuple[str, str | None]] = []
    for method in params.baselines.methods:
        if method == "individual":
            jobs += [(method, attr) for attr in params.attributes(ctx.article)]
        else:
            jobs.append((method, None))
    return jobs


def fetch(store: Store, run_id: str, artifact: str, dest: Path) -> Path:
    """Copy one artifact file of a run to `dest`."""
    with tempfile.TemporaryDirectory(prefix="progattr-fetch-") as tmp:
        got = store.download(run_id, artifact, tmp)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(got, dest)
    return dest


train_stage_task = task(run_stage, name="train-stage", task_run_name="stage-{index}")
baseline_task = task(run_baseline, name="baseline", task_run_name="baseline-{method}-{attribute}")
export_task = task(export_progressive, name="export-progressive")
