"""Messages to a webhook when someone should look: a run failed, a version failed its gates, a
version waits for approval.

The URL is read from the environment variable that `operations.webhook_env` names (default
`PROGATTR_WEBHOOK_URL`), never from params, and never logged: a webhook URL is a credential (Slack's
carry their token in the path). Unset or empty: no messages. The body is JSON: `text` (what Slack,
Mattermost and Teams-style incoming webhooks display) plus `event` (one of EVENTS), `article`,
`version` and what else the event knows. A webhook that fails is tried `ATTEMPTS` times, then logged
as a warning naming only its host: a notification never fails the run it reports on.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from progattr_core.config import Params, load_params
from progattr_core.errors import ProgattrError
from tasks.context import task_logger
from tracking.store import redact, with_backoff

EVENTS = ("run_failed", "gate_failed", "awaiting_approval")
ATTEMPTS, TIMEOUT_S = 3, 10.0


def where(url: str) -> str:
    """scheme://host[:port] of a webhook URL: what a log may show of it."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def notify(params: Params, event: str, text: str, **fields: Any) -> bool:
    """POST the message; True when the webhook took it, False when none is configured or it failed."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}; known: {EVENTS}")
    url = os.environ.get(params.operations.webhook_env, "").strip()
    if not url:
        return False
    body = json.dumps({"event": event, "text": text, **fields}, default=str).encode()

    def post() -> bool:
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return True

    try:   # HTTPError (4xx/5xx) is a URLError
        return with_backoff(post, ATTEMPTS - 1, 0.5, lambda exc: isinstance(exc, (urllib.error.URLError, OSError)))
    except (urllib.error.URLError, OSError) as exc:
        error = redact(str(exc)).replace(url, where(url))
    task_logger().warning("the %s message to the webhook at %s failed %d times (%s); not sent", event, where(url),
                          ATTEMPTS, error)
    return False


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect `on_failure` hook of the top-level flows: `run_failed`, once per failed run (a subflow's
    failure is reported by the flow that started it)."""
    if getattr(flow_run, "parent_task_run_id", None):
        return
    parameters = flow_run.parameters or {}
    try:
        params = load_params(parameters.get("params_path", "params.yaml"), parameters.get("overrides") or [])
    except ProgattrError:
        return
    article = parameters.get("article", "")
    notify(params, "run_failed", f"progattr: {flow.name} run {flow_run.name} ({article}) failed: "
           f"{redact(str(state.message or state.name))[:1500]}", article=article, flow=flow.name,
           flow_run=flow_run.name, flow_run_id=str(flow_run.id))
