"""Rebuild a registered version from its tags and compare (`progattr registry rebuild`).

plan (the version's tags; a clear error when one is missing) -> check out its git commit in a
scratch worktree -> pull its data version from the DVC remote -> its params snapshot -> train again
with that commit's code -> weight checksums and test accuracy beside the registered version's. It
never registers a version or moves an alias; the worktree is removed unless `keep`.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.logging import get_run_logger

from progattr_core.determinism import device_kind
from progattr_core.model import resolve_device
from tasks.context import make_context
from tasks.rebuild import (
    checkout_task,
    compare_task,
    params_task,
    plan_task,
    pull_task,
    remove_checkout,
    scratch_dir,
    train_task,
)


@flow(name="progattr-rebuild", flow_run_name="rebuild-{article}-v{version}")
def rebuild_flow(article: str, version: str, params_path: str = "params.yaml", overrides: list[str] | None = None,
                 keep: bool = False) -> dict:
    log = get_run_logger()
    start = time.perf_counter()
    ctx = make_context(params_path, article, overrides or [], resolve_profile=False)
    plan = plan_task(ctx, str(version))
    here = device_kind(resolve_device(ctx.params().compute.device))
    if plan.tags["device_kind"] != here:
        log.warning("version %s was trained on %s, this machine trains on %s: the weights may differ",
                    version, plan.tags["device_kind"], here)
    if plan.tags.get("git_dirty") == "True":
        log.warning("version %s was trained from uncommitted changes on top of commit %s: the rebuild uses that "
                    "commit as committed, so its weights may differ", version, plan.tags["git_commit"][:12])
    work = scratch_dir(plan)
    try:
        checkout_task(ctx.root, plan.tags["git_commit"], work)
        log.info("rebuilding %s version %s at commit %s in %s", plan.name, version, plan.tags["git_commit"][:12], work)
        pull_task(ctx.root, work, plan)
        params_file, rebuild_overrides = params_task(ctx, plan, work)
        rebuilt = train_task(work, plan, params_file, rebuild_overrides)
        result = compare_task(ctx, plan, work, rebuild_overrides, rebuilt, time.perf_counter() - start)
    finally:
        if keep:
            log.info("the rebuild's worktree is kept at %s", work)
        else:
            remove_checkout(ctx.root, work)
    return {**result, "worktree": str(work) if keep else None}
