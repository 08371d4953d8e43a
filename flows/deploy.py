"""The project's Prefect deployments, declared in code so the cron and pool come from params.yaml.

- `progattr-nightly/nightly-<article>`: per article in operations.articles, on operations.nightly_cron
  (operations.timezone), at most one run at a time (a second one waits in the queue: two runs for one
  article never overlap).
- `progattr-branch-add/branch-add`: runs for every `progattr.attribute.added` event, with the
  event's article and attribute as parameters; one at a time.
- `progattr-approval/approval`: on demand (`prefect deployment run` or `progattr registry request`).

All run on the process work pool operations.work_pool from this checkout (a local `from_source`:
the worker runs the flows in this folder with this venv). `progattr deploy` creates the pool if
needed and applies the deployments; `prefect worker start --pool <pool>` runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.schedules import Cron

from progattr_core.config import load_params
from tasks.attribute_events import EVENT

ENTRYPOINTS = {"nightly": "flows/nightly.py:nightly_flow", "branch-add": "flows/branch_add.py:branch_add_flow",
               "approval": "flows/approval.py:approval_flow"}
CODE_ROOT = Path(__file__).resolve().parents[1]   # the checkout the worker runs the flows from
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def attribute_added_trigger() -> DeploymentEventTrigger:
    """Run the branch-add deployment once per `progattr.attribute.added` event, for its article."""
    return DeploymentEventTrigger(
        name="attribute-added", expect={EVENT}, match={"prefect.resource.id": "progattr.article.*"},
        for_each={"prefect.resource.id"},
        parameters={"article": "{{ event.payload.article }}", "attribute": "{{ event.payload.attribute }}"})


def build_deployments(params_path: str | Path, overrides: list[str], root: str | Path) -> list[Any]:
    """The RunnerDeployments of this project (not yet applied)."""
    params_path = str(Path(params_path).resolve())
    ops = load_params(params_path, overrides).operations
    common = {"params_path": params_path, "overrides": list(overrides)}

    def load(kind: str) -> Flow:
        return Flow.from_source(source=str(Path(root).resolve()), entrypoint=ENTRYPOINTS[kind])

    nightly = load("nightly")
    deployments = [nightly.to_deployment(
        name=f"nightly-{article}", schedules=[Cron(ops.nightly_cron, timezone=ops.timezone)],
        concurrency_limit=ONE_AT_A_TIME, parameters={"article": article, **common}, tags=["progattr", article],
        description=f"Nightly retrain of {article} (skips when its data and params are already registered)")
        for article in ops.articles]
    deployments.append(load("branch-add").to_deployment(
        name="branch-add", triggers=[attribute_added_trigger()], concurrency_limit=ONE_AT_A_TIME,
        parameters=common, tags=["progattr"], description="Adds a Branch for each progattr.attribute.added event"))
    deployments.append(load("approval").to_deployment(
        name="approval", parameters=common, tags=["progattr"],
        description="Pauses for a person's approve/reject of a version, then moves champion"))
    return deployments


def ensure_work_pool(name: str) -> None:
    """Create the process work pool `name` unless it exists (what `prefect work-pool create` does)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(
                name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            pass


def deploy_all(params_path: str | Path, overrides: list[str], root: str | Path | None = None) -> list[str]:
    """Create the work pool if needed and apply every deployment; their `flow/deployment` names."""
    from prefect import deploy

    params_path = Path(params_path).resolve()
    pool = load_params(params_path, overrides).operations.work_pool
    ensure_work_pool(pool)
    deployments = build_deployments(params_path, overrides, root or CODE_ROOT)
    deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False,
           ignore_warnings=True)
    return [f"{d.flow_name}/{d.name}" for d in deployments]
