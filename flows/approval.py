"""The approval flow: show a version's gate results, pause for a person's decision, then promote.

The flow pauses with Prefect 3's `pause_flow_run(wait_for_input=ApprovalDecision)`. Answer it in the
Prefect UI (the paused run shows a form with the gate results as its description) or from the CLI:
`progattr registry answer --flow-run <id> --approve --reason "..."`. Approving moves `champion`
(tasks/approvals.py: `previous`, tags and the audit log); rejecting tags the version rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from prefect import flow, task
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger

from tasks import approvals
from tasks.context import make_context
from tasks.mlflow_store import Store


class ApprovalDecision(RunInput):
    """What the approver answers."""

    approve: bool
    by: str
    reason: str
    override_gates: bool = False


def _pending_version(params_path: str, article: str, overrides: list[str], version: str) -> dict:
    """The version to decide on (default: @challenger), marked pending; its `registry show` entry."""
    ctx = make_context(params_path, article, overrides)
    store = Store(ctx.store)
    if not version:
        mv = store.version_by_alias(f"progattr-{article}", approvals.CHALLENGER)
        if mv is None:
            raise approvals.ApprovalError(f"progattr-{article} has no @challenger to approve; pass a version")
        version = str(mv.version)
    approvals.mark_pending(store, article, version)
    return next(v for v in approvals.describe(store, article)["versions"] if v["version"] == version)


def _decide(params_path: str, article: str, overrides: list[str], version: str, decision: ApprovalDecision) -> list[dict]:
    ctx = make_context(params_path, article, overrides)
    store, audit = Store(ctx.store), approvals.AuditLog(ctx.path(ctx.params().operations.audit_log))
    if decision.approve:
        moves = approvals.approve(store, audit, article, version, decision.by, decision.reason, decision.override_gates)
    else:
        moves = approvals.reject(store, audit, article, version, decision.by, decision.reason)
    return [asdict(m) for m in moves]


pending_task = task(_pending_version, name="pending-version", retries=2, retry_delay_seconds=5)
decide_task = task(_decide, name="record-decision", retries=2, retry_delay_seconds=5)


@flow(name="progattr-approval", flow_run_name="approval-{article}")
def approval_flow(article: str, version: str = "", params_path: str = "params.yaml",
                  overrides: list[str] | None = None) -> dict:
    """Wait for a person to approve or reject `version` (default: @challenger) of `article`'s model."""
    overrides = overrides or []
    ops = make_context(params_path, article, overrides).params().operations
    shown = pending_task(params_path, article, overrides, version)
    description = (f"**progattr-{article} version {shown['version']}**\n\ngate: `{shown.get('gate', 'unknown')}`\n\n"
                   f"test accuracy: `{json.dumps(shown['accuracy'])}`\n\nadded attribute: "
                   f"`{shown.get('added_attribute', '-')}` ({shown.get('branch_add_mode', '-')})")
    get_run_logger().info("waiting for a decision on %s", description.replace("\n\n", "; "))
    decision = pause_flow_run(wait_for_input=ApprovalDecision.with_initial_data(description=description, by="",
                                                                                reason="", approve=False),
                              timeout=ops.approval_timeout_s, poll_interval=ops.approval_poll_s)
    moves = decide_task(params_path, article, overrides, shown["version"], decision)
    get_run_logger().info("%s by %s: %s", "approved" if decision.approve else "rejected", decision.by, moves)
    return {"version": shown["version"], "approved": decision.approve, "by": decision.by, "moves": moves}


def answer(flow_run_id: str, approve: bool, by: str, reason: str, override_gates: bool = False) -> None:
    """Answer a paused approval flow run (what the Prefect UI's form does)."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resume_flow_run(UUID(flow_run_id), run_input={"approve": approve, "by": by, "reason": reason,
                                                  "override_gates": override_gates})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.approval", description=approval_flow.__doc__)
    ap.add_argument("--article", required=True)
    ap.add_argument("--version", default="")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    print(json.dumps(approval_flow(args.article, args.version, args.params, args.overrides), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
