"""The training flow for one article: ingest -> validate -> slice -> progressive stages -> baselines
-> evaluate -> register. Every step is a task in tasks/; this module only says in which order."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from progattr_core.config import load_params
from progattr_core.schedule import build_schedule
from tasks.context import baseline_key, make_context, train_key
from tasks.context import flow_run as mlflow_flow_run
from tasks.evaluation import evaluate_task
from tasks.ingest import ingest_task, slice_task, validate_task
from tasks.notify import on_flow_failure
from tasks.registry import register_task
from tasks.training import baseline_jobs, baseline_task, export_task, train_progressive, train_stage_task
from tracking.store import redact


@flow(name="progattr-train", task_runner=ThreadPoolTaskRunner(max_workers=2), on_failure=[on_flow_failure])
def train_flow(article: str = "tops", source: str = "", params_path: str = "params.yaml",
               overrides: list[str] | None = None, resolved: list[str] | None = None) -> dict:
    """Train, evaluate and register `article` from `source` (a folder or s3://bucket/prefix;
    default: params pipeline.source). `resolved`: `profile: auto`'s choice made by a calling flow
    (its context's `resolved`), taken as it is."""
    ctx = make_context(params_path, article, overrides or [], resolved=resolved)
    source = source or ctx.params().pipeline.source
    with mlflow_flow_run(ctx, f"train-{article}", {"prefect_flow_run_id": str(flow_run.get_id())}) as ctx:
        data = ingest_task(ctx, source)
        validate_task(ctx, data)
        slice_task(ctx, data)
        key, bkey = train_key(ctx, data), baseline_key(ctx, data)
        schedule = build_schedule(ctx.params(), article)
        jobs = baseline_jobs(ctx)
        # train.distill: individual distils the individual models into progressive: they train first
        first = [j for j in jobs if j[0] == "individual"] if ctx.params().train.distill == "individual" else []
        teachers = [f.result() for f in [baseline_task.submit(ctx, data, bkey, m, a) for m, a in first]]
        stages = train_progressive(ctx, data, train_stage_task)
        model_path = export_task(ctx, stages)
        futures = [baseline_task.submit(ctx, data, bkey, method, attr) for method, attr in jobs if (method, attr) not in first]
        baselines = teachers + [f.result() for f in futures]
        evaluation = evaluate_task(ctx, data, stages + baselines)
        registry = register_task(ctx, data, key, bkey, model_path, evaluation, [s.name for s in schedule])
    return {"mlflow_run_id": ctx.flow_run_id, "tracking_uri": redact(ctx.store.tracking_uri), "data": asdict(data),
            "train_key": key, "stages_trained": [i for i, s in enumerate(stages) if s.trained_now],
            "table": evaluation.table_markdown, "accuracy": evaluation.accuracy, "registry": asdict(registry),
            "recipe": ctx.recipe, "resolved": {"profile": ctx.params().profile, "model.init": ctx.params().model.init,
                                               "train.class_weighting": ctx.params().train.class_weighting}}


def run_train_flow(article: str, source: str, params_path: str, overrides: list[str],
                   resolved: list[str] | None = None) -> dict:
    """The flow with `pipeline.max_workers` concurrent tasks (the decorator's runner is a default)."""
    workers = load_params(params_path, overrides).pipeline.max_workers
    return train_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(
        article, source, params_path, overrides, resolved)
