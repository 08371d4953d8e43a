"""The nightly retrain of one article (deployed on a cron by flows/deploy.py).

ingest -> announce attributes the registered model lacks (`progattr.attribute.added`, which runs the
branch-add deployment) -> if this data version and these params are already registered, stop:
"nothing changed" -> else the training flow as a subflow. Either way, then the retention policy for
this article (`retention.after_nightly`; tasks/retention.py).

One nightly run per article at a time, however it is started: the deployment queues its runs
(concurrency limit 1), and every run also holds `<outputs>/<article>/nightly.lock` (progattr_core.locks),
so a run started directly (`progattr nightly`) while another is going does nothing: its flow run
completes as skipped ("busy", naming the holder) and `progattr nightly` exits 75 (EX_TEMPFAIL: try again later).
"""

from __future__ import annotations

from prefect import flow
from prefect.logging import get_run_logger

from flows.train_flow import run_train_flow
from progattr_core.locks import LockBusy, hold
from tasks.attribute_events import announce_task
from tasks.context import PipelineContext, make_context
from tasks.ingest import ingest_task
from tasks.notify import on_flow_failure
from tasks.registry import registered_training_task
from tasks.retention import retention_task


@flow(name="progattr-nightly", flow_run_name="nightly-{article}", on_failure=[on_flow_failure])
def nightly_flow(article: str = "tops", source: str = "", params_path: str = "params.yaml",
                 overrides: list[str] | None = None) -> dict:
    """Retrain `article` if its data or params changed since the registered version; else skip."""
    overrides = overrides or []
    # the lock first: resolving `profile: auto` reads the registry, which a run holding the lock may be creating
    ctx = make_context(params_path, article, overrides, resolve_profile=False)
    try:
        with hold(ctx.outputs("nightly.lock"), f"the nightly run of {article!r}"):
            ctx = make_context(params_path, article, overrides)
            result = _retrain_if_changed(ctx, source or ctx.params().pipeline.source, params_path, overrides)
            if ctx.params().retention.after_nightly:
                result["retention"] = retention_task(ctx, [article])
            return result
    except LockBusy as busy:
        get_run_logger().warning("%s; this run does nothing", busy)
        return {"skipped": True, "reason": "busy", "message": str(busy)}


def _retrain_if_changed(ctx: PipelineContext, source: str, params_path: str, overrides: list[str]) -> dict:
    data = ingest_task(ctx, source)
    announced = announce_task(ctx, data, source)
    registered = registered_training_task(ctx, data)
    if registered is not None:
        get_run_logger().info("nothing changed for %s: data version %s and params hash %s are those of registered "
                              "version %s; no training", ctx.article, data.data_version, registered["params_hash"],
                              registered["version"])
        return {"skipped": True, "reason": "nothing changed", "registered": registered, "announced": announced}
    result = run_train_flow(ctx.article, source, params_path, overrides, list(ctx.resolved) or None)
    return {"skipped": False, "announced": announced, "registry": result["registry"],
            "stages_trained": result["stages_trained"], "data_version": result["data"]["data_version"]}
