"""Apply the retention policy (params `retention:`; `progattr retention`; also the end of each nightly run).

prune old checkpoints and baseline models in MLflow per article -> pretraining checkpoints -> the decode
cache -> the DVC cache. What it keeps and why: tasks/retention.py.
"""

from __future__ import annotations

from prefect import flow

from tasks.context import make_context
from tasks.retention import retention_task


@flow(name="progattr-retention", flow_run_name="retention")
def retention_flow(articles: list[str] | None = None, params_path: str = "params.yaml",
                   overrides: list[str] | None = None, dry_run: bool = False) -> dict:
    ctx = make_context(params_path, None, overrides or [], resolve_profile=False)
    return retention_task(ctx, list(articles or ctx.params().taxonomy), dry_run)
