"""The training flow for one article: ingest -> validate -> slice -> progressive stages -> baselines
-> evaluate -> register. Every step is a task in tasks/; this module only says in which order."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from progattr_core.schedule import build_schedule
from tasks.context import baseline_key, end_flow_run, make_context, start_flow_run, train_key
from tasks.evaluation import evaluate_task
from tasks.ingest import ingest_task, slice_task, validate_task
from tasks.mlflow_store import redact
from tasks.registry import register_task
from tasks.training import baseline_jobs, baseline_task, export_task, stages_trained_in, train_stage_task


@flow(name="progattr-train", task_runner=ThreadPoolTaskRunner(max_workers=2))
def train_flow(article: str = "tops", source: str = "", params_path: str = "params.yaml",
               overrides: list[str] | None = None) -> dict:
    """Train, evaluate and register `article` from `source` (a folder or s3://bucket/prefix;
    default: params pipeline.source)."""
    ctx = make_context(params_path, article, overrides or [])
    source = source or ctx.params().pipeline.source
    ctx = start_flow_run(ctx, f"train-{article}", {"prefect_flow_run_id": str(flow_run.get_id())})
    try:
        data = ingest_task(ctx, source)
        validate_task(ctx, data)
        slice_task(ctx, data)
        key, bkey = train_key(ctx, data), baseline_key(ctx, data)
        schedule = build_schedule(ctx.params(), article)
        stages = []
        for stage in schedule:
            stages.append(train_stage_task(ctx, data, key, stage.index, stages[-1] if stages else None))
        model_path = export_task(ctx, stages)
        futures = [baseline_task.submit(ctx, data, bkey, method, attr) for method, attr in baseline_jobs(ctx)]
        baselines = [f.result() for f in futures]
        evaluation = evaluate_task(ctx, data, stages + baselines)
        registry = register_task(ctx, data, key, bkey, model_path, evaluation, [s.name for s in schedule])
    except BaseException:
        end_flow_run(ctx, ok=False)
        raise
    end_flow_run(ctx, ok=True)
    return {"mlflow_run_id": ctx.flow_run_id, "tracking_uri": redact(ctx.store.tracking_uri), "data": asdict(data),
            "train_key": key, "stages_trained": stages_trained_in(ctx, key),
            "table": evaluation.table_markdown, "accuracy": evaluation.accuracy, "registry": asdict(registry)}


def run_train_flow(article: str, source: str, params_path: str, overrides: list[str]) -> dict:
    """The flow with `pipeline.max_workers` concurrent tasks (the decorator's runner is a default)."""
    workers = make_context(params_path, article, overrides).params().pipeline.max_workers
    return train_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(
        article, source, params_path, overrides)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.train_flow", description=train_flow.__doc__)
    ap.add_argument("--article", default="tops")
    ap.add_argument("--source", default="", help="a folder, or s3://bucket/prefix (default: params pipeline.source)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    result = run_train_flow(args.article, args.source, args.params, args.overrides)
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=1, default=str))
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
