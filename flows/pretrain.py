"""Pretrain a Base for `model.init` (`progattr pretrain`, the `pretrain` stage of dvc.yaml).

import the densely labelled catalogue (minus the evaluated article types) -> train the masked
multi-task network, a checkpoint per epoch in MLflow (a killed run resumes from its last epoch) ->
register it as a version of `progattr-backbone` with its lineage. Start trainings from it with
`--set model.init=models:/progattr-backbone/<version>` (or an alias such as `@champion`).
"""

from __future__ import annotations

from prefect import flow

from tasks.context import flow_run, make_context
from tasks.notify import on_flow_failure
from tasks.pretrain import import_task, register_task, summary, train_task


@flow(name="progattr-pretrain", flow_run_name="pretrain", on_failure=[on_flow_failure])
def pretrain_flow(params_path: str = "params.yaml", overrides: list[str] | None = None, out: str | None = None,
                  source: str | None = None) -> dict:
    overrides = [*(overrides or []), *([f"pretrain.source={source}"] if source else [])]
    ctx = make_context(params_path, None, overrides, resolve_profile=False)
    with flow_run(ctx, "pretrain", {"flow": "pretrain"}) as ctx:
        data = import_task(ctx)
        ref = train_task(ctx, data)
        version = register_task(ctx, data, ref, out)
    return summary(data, ref, version)
