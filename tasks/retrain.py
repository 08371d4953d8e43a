"""Whether a training is already registered: the nightly flow's cheap "nothing changed" check."""

from __future__ import annotations

from prefect import task

from tasks.context import DataRef, PipelineContext, baseline_key, train_key
from tasks.mlflow_store import Store
from tasks.registry import model_name


def registered_training(ctx: PipelineContext, data: DataRef) -> dict[str, str] | None:
    """The latest version trained from this data version with these params (same training and
    baseline keys), or None when training would produce something new."""
    key, bkey = train_key(ctx, data), baseline_key(ctx, data)
    found = [v for v in Store(ctx.store).versions_with_tag(model_name(ctx.article), "train_key", key)
             if v.tags.get("progattr.baseline_key") == bkey]
    if not found:
        return None
    latest = max(found, key=lambda v: int(v.version))
    return {"version": str(latest.version), "data_version": data.data_version,
            "params_hash": latest.tags.get("progattr.params_hash", ""), "train_key": key}


registered_training_task = task(registered_training, name="registered-training", retries=2, retry_delay_seconds=5)
