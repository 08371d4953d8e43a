"""The `progattr.attribute.added` Prefect event: an attribute the data has labels for (and the
taxonomy a vocabulary for) that the article's champion model lacks.

The branch-add deployment's trigger (flows/deploy.py) runs the branch-add flow for each such event.
Emitted by the nightly flow after ingestion, or by hand (`progattr attribute add`, e.g. from a DVC
commit hook or CI: Prefect's incoming webhooks are Cloud-only).
"""

from __future__ import annotations

import tempfile

from prefect import task

from progattr_core.data.manifest import read_manifest
from progattr_core.errors import ConfigError
from progattr_core.model_file import load_model
from tasks.context import DataRef, PipelineContext, task_logger
from tasks.registry import champion_or_latest
from tasks.training import MODEL
from tracking.registry import Registry, model_name
from tracking.store import TAG, Store

EVENT = "progattr.attribute.added"


def article_resource(article: str) -> dict[str, str]:
    """The event's resource: one per article, so triggers can match (or group by) an article."""
    return {"prefect.resource.id": f"progattr.article.{article}", "prefect.resource.name": article,
            "progattr.article": article}


def new_attributes(ctx: PipelineContext, data: DataRef) -> list[str]:
    """Taxonomy attributes with labels in the manifest that the champion (else latest) model lacks,
    and that no registered version already adds to that model (a branch-add awaiting approval is
    not announced again every night).

    Nothing is new before the first registered version: the first training covers every attribute.
    """
    store, registry = Store.of(ctx.store), Registry.of(ctx.store)
    name = model_name(ctx.article)
    found = champion_or_latest(registry, name)
    if found is None:
        return []
    base = found[0]
    with tempfile.TemporaryDirectory(prefix="progattr-attrs-") as tmp:
        existing = set(load_model(store.download(base.run_id, MODEL, tmp)).classes)
    pending = registry.versions_with_tags(name, {"base_version": base.version})
    existing |= {v.tags.get(TAG + "added_attribute") for v in pending}
    df = read_manifest(ctx.path(data.manifest))
    return [a for a in ctx.params().attributes(ctx.article) if a in df and df[a].notna().any() and a not in existing]


def emit_attribute_added(article: str, attribute: str, source: str, data_version: str, by: str) -> str:
    """Post the event to the Prefect API in PREFECT_API_URL; its id, once that server has accepted it.

    A direct `POST /events`, not `emit_event`: Prefect's process-wide EventsWorker keeps the API URL
    it first started with (its instance key holds no URL), so in a process that had talked to another
    server the event silently went there and no trigger ever saw it (issue #5). The post goes to the
    API in effect now and raises when the server does not take the event.
    """
    import httpx
    from prefect.events import Event
    from prefect.settings import PREFECT_API_URL
    from prefect.utilities.asyncutils import run_coro_as_sync

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError("PREFECT_API_URL is not set: the event needs a Prefect server to go to "
                          "(e.g. PREFECT_API_URL=http://127.0.0.1:4200/api)")
    event = Event(event=EVENT, resource=article_resource(article),
                  payload={"article": article, "attribute": attribute, "source": source,
                           "data_version": data_version, "emitted_by": by})
    try:
        run_coro_as_sync(_post_event(event))
    except httpx.HTTPError as exc:
        raise ConfigError(f"the Prefect API at {url} (PREFECT_API_URL) did not take {EVENT}: {exc}") from exc
    return str(event.id)


async def _post_event(event) -> None:
    """Attach the run context's flow run, task run and tags (as `emit_event` does), then post."""
    from prefect import get_client
    from prefect.events.related import related_resources_from_run_context

    async with get_client() as client:
        event.related += await related_resources_from_run_context(
            client, exclude={resource.id for resource in event.involved_resources})
        await client.request("POST", "/events", json=[event.model_dump(mode="json")])


def announce_new_attributes(ctx: PipelineContext, data: DataRef, source: str) -> list[str]:
    """Emit one event per new attribute; the attributes announced."""
    found = new_attributes(ctx, data)
    for attribute in found:
        event_id = emit_attribute_added(ctx.article, attribute, source, data.data_version, "nightly ingestion")
        task_logger().info("new attribute %r in %s's data, absent from its model: emitted %s (event %s)",
                           attribute, ctx.article, EVENT, event_id)
    return found


announce_task = task(announce_new_attributes, name="announce-new-attributes")
