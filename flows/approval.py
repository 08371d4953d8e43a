"""The approval flow: show a version's gate results, pause for a person's decision, then promote.

The flow pauses with Prefect 3's `pause_flow_run(wait_for_input=ApprovalDecision)`. Answer it in the
Prefect UI (the paused run shows a form with the gate results as its description) or from the CLI:
`progattr registry answer --flow-run <id> --approve --reason "..."`. Approving moves `champion`
(tasks/approvals.py: `previous`, tags and the audit log); rejecting tags the version rejected.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from prefect import flow, task
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger

from tasks import approvals
from tasks.context import PipelineContext, make_context
from tracking.registry import CHALLENGER, Registry, model_name


class ApprovalDecision(RunInput):
    """What the approver answers."""

    approve: bool
    by: str
    reason: str
    override_gates: bool = False


def _pending_version(ctx: PipelineContext, version: str) -> dict:
    """The version to decide on (default: @challenger), marked pending; its `registry show` entry."""
    registry, article = Registry.of(ctx.store), ctx.article
    if not version:
        version = registry.alias_version(model_name(article), CHALLENGER) or ""
        if not version:
            raise approvals.ApprovalError(f"{model_name(article)} has no @{CHALLENGER} to approve; pass a version")
    approvals.mark_pending(registry, article, version)
    return next(v for v in approvals.describe(registry, article)["versions"] if v["version"] == version)


def _decide(ctx: PipelineContext, version: str, decision: ApprovalDecision) -> list[dict]:
    article = ctx.article
    registry, audit = Registry.of(ctx.store), approvals.AuditLog(ctx.path(ctx.params().operations.audit_log))
    if decision.approve:
        moves = approvals.approve(registry, audit, article, version, decision.by, decision.reason, decision.override_gates)
    else:
        moves = approvals.reject(registry, audit, article, version, decision.by, decision.reason)
    return [asdict(m) for m in moves]


pending_task = task(_pending_version, name="pending-version")
decide_task = task(_decide, name="record-decision")


@flow(name="progattr-approval", flow_run_name="approval-{article}")
def approval_flow(article: str, version: str = "", params_path: str = "params.yaml",
                  overrides: list[str] | None = None) -> dict:
    """Wait for a person to approve or reject `version` (default: @challenger) of `article`'s model."""
    overrides = overrides or []
    ctx = make_context(params_path, article, overrides, resolve_profile=False)
    ops = ctx.params().operations
    shown = pending_task(ctx, version)
    live = approvals.live_line(approvals.live_evidence(approvals.metrics_url(ctx.params()), article, shown["version"]))
    description = (f"**{model_name(article)} version {shown['version']}**\n\ngate: `{shown.get('gate', 'unknown')}`\n\n"
                   f"test accuracy: `{json.dumps(shown['accuracy'])}`\n\n"
                   f"coverage at the target precision (`{json.dumps(shown.get('target_precision', {}))}`): "
                   f"`{json.dumps(shown.get('coverage', {}))}`\n\n"
                   f"approval report (one HTML page: the numbers against the champion, curves, the images "
                   f"the two disagree on): {shown.get('report', 'none')}\n\nadded attribute: "
                   f"`{shown.get('added_attribute', '-')}` ({shown.get('branch_add_mode', '-')})\n\n{live}")
    get_run_logger().info("waiting for a decision on %s", description.replace("\n\n", "; "))
    decision = pause_flow_run(wait_for_input=ApprovalDecision.with_initial_data(description=description, by="",
                                                                                reason="", approve=False),
                              timeout=ops.approval_timeout_s, poll_interval=ops.approval_poll_s)
    moves = decide_task(ctx, shown["version"], decision)
    get_run_logger().info("%s by %s: %s", "approved" if decision.approve else "rejected", decision.by, moves)
    return {"version": shown["version"], "approved": decision.approve, "by": decision.by, "moves": moves}


def answer(flow_run_id: str, approve: bool, by: str, reason: str, override_gates: bool = False) -> None:
    """Answer a paused approval flow run (what the Prefect UI's form does)."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(flow_run_id), run_input={"approve": approve, "by": by, "reason": reason,
                                                  "override_gates": override_gates})
