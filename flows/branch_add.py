"""The branch-add flow: a new attribute becomes a new Branch of the article's champion model.

ingest -> validate the new attribute's labels -> load the champion (or latest) version -> the
branch-add stages (params branch_add.mode) -> evaluate all attributes against the base model ->
register, `challenger` when the gates pass. Started by the `progattr.attribute.added` event through
the branch-add deployment's trigger (flows/deploy.py), or by hand.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow
from prefect.runtime import flow_run

from tasks.branch_add import (
    branch_key,
    branch_schedule,
    branch_stage_task,
    evaluate_branch_task,
    export_branch_task,
    load_base_task,
    register_branch_task,
    validate_attribute_task,
)
from tasks.context import flow_run as mlflow_flow_run
from tasks.context import make_context
from tasks.ingest import ingest_task
from tasks.notify import on_flow_failure


@flow(name="progattr-branch-add", flow_run_name="branch-add-{article}-{attribute}", on_failure=[on_flow_failure])
def branch_add_flow(article: str, attribute: str, source: str = "", mode: str = "",
                    params_path: str = "params.yaml", overrides: list[str] | None = None) -> dict:
    """Add `attribute` to `article`'s champion model as a new Branch (mode: params branch_add.mode
    unless given: frozen_base | progressive), evaluate, register as a challenger."""
    ctx = make_context(params_path, article, overrides or [], resolve_profile=False)
    source = source or ctx.params().pipeline.source
    mode = mode or ctx.params().branch_add.mode
    with mlflow_flow_run(ctx, f"branch-add-{article}-{attribute}", {
            "prefect_flow_run_id": str(flow_run.get_id()), "added_attribute": attribute, "branch_add_mode": mode}) as ctx:
        data = ingest_task(ctx, source)
        validate_attribute_task(ctx, data, attribute)
        base = load_base_task(ctx, attribute)
        key = branch_key(ctx, data, base, attribute, mode)
        schedule = branch_schedule(ctx, base, attribute, mode)
        stages = []
        for stage in schedule:
            stages.append(branch_stage_task(ctx, data, key, base, attribute, mode, stage.index,
                                            stages[-1] if stages else None))
        model_path = export_branch_task(ctx, stages)
        evaluation = evaluate_branch_task(ctx, data, base, model_path)
        registry = register_branch_task(ctx, data, key, base, attribute, mode, model_path, evaluation,
                                        [s.name for s in schedule])
    return {"mlflow_run_id": ctx.flow_run_id, "article": article, "attribute": attribute, "mode": mode,
            "base_version": base.version, "stages_trained": [s.name for s in stages if s.trained_now],
            "evaluation": asdict(evaluation), "registry": asdict(registry)}
