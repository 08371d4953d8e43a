"""Operations against a real Prefect server and process worker on loopback, MLflow on SQLite:
the nightly deployment skips when nothing changed, the approval flow pauses for input and moves
`champion`, and the attribute-added event runs the branch-add deployment (frozen_base: old
predictions bit-identical). The tests share one server, worker and project; the state each needs comes from the module's
fixtures (trained, approved), so they pass alone and in any order."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
import requests

from progattr.cli import main as cli
from tasks.context import make_context
from tests.paths import ROOT
from tests.support import stop
from tracking.registry import Registry
from tracking.store import Store

from .conftest import ARTICLE, NEW_ATTRIBUTE, SECOND

pytestmark = pytest.mark.flows
NAME = f"progattr-{ARTICLE}"


def _store(project) -> Store:
    folder, overrides = project
    return Store(make_context(folder / "params.yaml", ARTICLE, overrides).store)


def _wait(flow_run_id: UUID, until: tuple[str, ...], timeout: float = 300):
    """Poll the server until the run's state name is one of `until` (or final); the flow run."""
    from prefect import get_client

    deadline = time.time() + timeout
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and (run.state.name in until or run.state.is_final()):
                return run
            time.sleep(1)
    raise TimeoutError(f"flow run {flow_run_id} not in {until} after {timeout}s (state {run.state})")


def _logs(flow_run_id: UUID) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in logs)


def _logged(flow_run_id: UUID, text: str, timeout: float = 90) -> bool:
    """Whether the run's logs contain `text`; logs reach the server shortly after the run ends."""
    deadline = time.time() + timeout
    while text not in _logs(flow_run_id):
        if time.time() > deadline:
            return False
        time.sleep(1)
    return True


def _runs_of(deployment: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def _events_since(since: datetime) -> list:
    """progattr and automation events the server holds that occurred since `since`, oldest first."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder

    with get_client(sync_client=True) as client:
        return client.read_events(EventFilter(occurred=EventOccurredFilter(since=since),
                                              event=EventNameFilter(prefix=["progattr.", "prefect.automation."]),
                                              order=EventOrder.ASC), limit=50).events


def _triggered_run(event_id: str, since: datetime, server_log: Path, timeout: float = 120):
    """Wait for each step from the event to the branch-add run: the event stored on the server, the
    automation triggered by it, the run created. The run, or a failure naming the steps seen (with their
    seconds) and missing, the events the server holds and its log's tail."""
    steps = {"event stored": lambda events, runs: any(str(e.id) == event_id for e in events),
             "automation triggered": lambda events, runs: any(
                 e.event == "prefect.automation.triggered" and f"prefect.event.{event_id}" in
                 [r.id for r in e.related] for e in events),
             "branch-add run created": lambda events, runs: bool(runs)}
    reached: dict[str, float] = {}
    start = time.time()
    while True:
        events, runs = _events_since(since), _runs_of("progattr-branch-add/branch-add")
        for step, done in steps.items():
            if step not in reached and done(events, runs):
                reached[step] = round(time.time() - start, 1)
        if runs:
            return runs[0]
        if time.time() - start > timeout:
            tail = [line for line in server_log.read_text().splitlines() if "uvicorn.access" not in line][-40:]
            seen = "\n".join(f"  {e.occurred} {e.event} {e.resource.id}" for e in events)
            raise AssertionError(f"no branch-add run {timeout}s after event {event_id}; steps reached {reached}, "
                                 f"missing {[s for s in steps if s not in reached]}\nevents on the server:\n{seen}"
                                 "\nserver log tail:\n" + "\n".join(tail))
        time.sleep(1)


@pytest.fixture(scope="module")
def trained(prefect_server, project):
    """The first nightly run, in this process: new data, so it trains and registers version 1."""
    from flows.nightly import nightly_flow

    folder, overrides = project
    result = nightly_flow(ARTICLE, "", str(folder / "params.yaml"), overrides)
    assert result["skipped"] is False and result["registry"]["version"] == "1"
    return result


def test_nightly_deployment_through_the_worker_skips_when_nothing_changed(project, worker, trained):
    from prefect.deployments import run_deployment

    assert f"progattr-nightly/nightly-{ARTICLE}" in worker
    store = _store(project)
    stage_runs = len(store.search({"kind": "stage"}))
    versions = [str(v.version) for v in Registry.of(store.cfg).versions_with_tags(NAME, {"article": ARTICLE})]
    # Two runs at once for one article: the deployment's limit queues the second behind the first.
    ids = [run_deployment(f"progattr-nightly/nightly-{ARTICLE}", timeout=0).id for _ in range(2)]
    runs = sorted((_wait(i, ()) for i in ids), key=lambda r: r.start_time)
    assert all(r.state.is_completed() for r in runs), [r.state for r in runs]
    assert runs[0].end_time <= runs[1].start_time, "two nightly runs of one article overlapped"
    assert all(_logged(r.id, "nothing changed") for r in runs), [_logs(r.id)[-2000:] for r in runs]
    assert len(store.search({"kind": "stage"})) == stage_runs  # no training
    assert [str(v.version) for v in Registry.of(store.cfg).versions_with_tags(NAME, {"article": ARTICLE})] == versions


def test_nightly_deployment_has_cron_and_one_at_a_time_limit(prefect_server, worker):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(f"progattr-nightly/nightly-{ARTICLE}")
        branch = client.read_deployment_by_name("progattr-branch-add/branch-add")
        automations = client.read_automations_by_name("attribute-added")
    assert dep.schedules[0].schedule.cron == "0 2 * * *" and dep.schedules[0].schedule.timezone == "UTC"
    for d in (dep, branch):  # a second run waits in the queue instead of overlapping
        assert d.global_concurrency_limit.limit == 1 and d.concurrency_options.collision_strategy == "ENQUEUE"
    (automation,) = automations
    assert automation.trigger.expect == {"progattr.attribute.added"}
    assert automation.actions[0].deployment_id == branch.id


@pytest.fixture(scope="module")
def approved(project, worker, trained) -> dict:
    """Version 1 of jeans approved as a reviewer does it: the approval deployment pauses for input and
    `progattr registry answer` approves it (ana, "first nightly model"). The one approval of version 1: every
    test that needs jeans' champion takes it from here, so the tests pass alone and in any order. Returns
    what was seen while the run waited, and the run once done."""
    from prefect.deployments import run_deployment

    run = run_deployment("progattr-approval/approval", parameters={"article": ARTICLE}, timeout=0)
    paused = _wait(run.id, ("Paused",))
    store = _store(project)
    seen = {"paused": paused.state, "live_line": _logged(run.id, "live: serving not reachable"),
            "status": store.client.get_model_version(NAME, "1").tags.get("progattr.approval.status"),
            "champion": Registry.of(store.cfg).alias_version(NAME, "champion")}
    seen["answered"] = cli(["registry", "answer", "--flow-run", str(run.id), "--approve", "--by", "ana",
                            "--reason", "first nightly model"])
    return {**seen, "done": _wait(run.id, ())}


def test_approval_flow_pauses_for_input_then_moves_champion(project, approved):
    assert approved["paused"].name == "Paused", approved["paused"]
    assert approved["live_line"]  # the form's live-evidence line (no service here)
    assert approved["status"] == "pending" and approved["champion"] is None
    assert approved["answered"] == 0
    assert approved["done"].state.is_completed(), approved["done"].state
    store = _store(project)
    assert Registry.of(store.cfg).alias_version(NAME, "champion") == "1"  # also after the branch-add test's rollback
    tags = store.client.get_model_version(NAME, "1").tags
    assert tags["progattr.approval.status"] == "approved" and tags["progattr.approval.by"] == "ana"


def test_attribute_added_event_runs_branch_add_deployment_then_approve_rollback_history(project, approved,
                                                                                      new_attribute_added,
                                                                                      prefect_home, capsys):
    import torch

    from progattr_core.model_file import load_model
    from tasks.attribute_events import new_attributes
    from tasks.ingest import ingest
    from tasks.training import MODEL, fetch

    folder, overrides = project
    common = ["--params", str(folder / "params.yaml"), "--set", *overrides]
    ctx = make_context(folder / "params.yaml", ARTICLE, overrides)
    assert new_attributes(ctx, ingest(ctx, "data/raw/mini")) == [NEW_ATTRIBUTE]  # what the nightly announces
    since = datetime.now(UTC)
    capsys.readouterr()
    assert cli(["attribute", "add", "--article", ARTICLE, "--attribute", NEW_ATTRIBUTE, *common]) == 0
    out = capsys.readouterr().out
    assert (emitted := re.search(r"\(event ([0-9a-f-]{36})\)", out)), out
    first = _triggered_run(emitted.group(1), since, prefect_home / "server.log")
    assert first.parameters["attribute"] == NEW_ATTRIBUTE and first.parameters["article"] == ARTICLE
    run = _wait(first.id, ())
    assert run.state.is_completed(), (run.state, _logs(run.id)[-3000:])

    store = _store(project)
    v2 = store.client.get_model_version(NAME, "2")
    assert new_attributes(ctx, ingest(ctx, "data/raw/mini")) == []  # announced once, not every night
    assert v2.tags["progattr.added_attribute"] == NEW_ATTRIBUTE and v2.tags["progattr.branch_add_mode"] == "frozen_base"
    assert v2.tags["progattr.base_version"] == "1" and v2.tags["progattr.gate"] == "passed"
    # its approval report: the new attribute's numbers are the version's, its mistakes shown (v1 lacks it)
    assert v2.tags["progattr.report"].endswith("report/report.html")
    page = (folder / "outputs" / ARTICLE / "branch_add" / "evaluation" / "report.html").read_text()
    row = re.search(rf'<tr data-attribute="{NEW_ATTRIBUTE}">(.*?)</tr>', page, re.S).group(1)
    shown = float(re.search(r'class="accuracy">([\d.]+)<', row).group(1))
    assert abs(shown - 100 * float(v2.tags[f"progattr.accuracy.{NEW_ATTRIBUTE}"])) <= 0.051, (shown, row)
    assert "<script" not in page and page.count("data:image/png;base64,") >= 2  # curves, confusion matrices
    assert Registry.of(store.cfg).alias_version(NAME, "challenger") == "2"
    old = load_model(fetch(store, store.client.get_model_version(NAME, "1").run_id, MODEL, folder / "v1.pt"))
    new = load_model(fetch(store, v2.run_id, MODEL, folder / "v2.pt"))
    assert list(new.classes) == [*old.classes, NEW_ATTRIBUTE]
    assert old.branch_split("shade") == new.branch_split("shade") == new.branch_split(NEW_ATTRIBUTE) == "layer2"
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = old.eval()(images), new.eval()(images, list(old.classes))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in old.classes)  # bit-identical

    assert cli(["registry", "approve", "--article", ARTICLE, "--version", "2", "--by", "ben",
                "--reason", "adds distress", *common]) == 0
    assert cli(["registry", "rollback", "--article", ARTICLE, "--by", "cy", "--reason", "distress too noisy",
                *common]) == 0
    assert Registry.of(store.cfg).alias_version(NAME, "champion") == "1"
    capsys.readouterr()
    assert cli(["registry", "history", "--article", ARTICLE, *common]) == 0
    history = capsys.readouterr().out
    assert "@champion: - -> 1 (approve by ana" in history and "first nightly model" in history
    assert "@champion: 1 -> 2 (approve by ben" in history and "@champion: 2 -> 1 (rollback by cy" in history
    assert "distress too noisy" in history


def test_two_articles_train_through_one_pool_and_one_serve_follows_each_champion(project, approved):
    """The second article's nightly deployment trains it on the same worker pool; one `progattr serve
    --articles jeans tops` (two workers) starts while tops has no champion yet (ready, serving jeans,
    naming tops as waiting), then picks up tops' first champion while jeans' stays."""
    from prefect.deployments import run_deployment

    from tests.serving.helpers import png_bytes
    from tests.support import free_port, wait_http

    folder, overrides = project
    common = ["--params", str(folder / "params.yaml"), "--set", *overrides]
    run = _wait(run_deployment(f"progattr-nightly/nightly-{SECOND}", timeout=0).id, ())
    assert run.state.is_completed(), (run.state, _logs(run.id)[-3000:])
    registry = Registry.of(_store(project).cfg)
    assert registry.alias_version(f"progattr-{SECOND}", "challenger") == "1"
    assert registry.alias_version(f"progattr-{SECOND}", "champion") is None
    champions = {ARTICLE: registry.alias_version(NAME, "champion"), SECOND: None}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(folder / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "progattr", "serve", "--articles", ARTICLE, SECOND, "--workers", "2",
                             "--host", "127.0.0.1", "--port", str(port), *common, "serving.poll_interval_s=0.3"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"{url}/readyz", proc, timeout=150)
        ready = requests.get(f"{url}/readyz", timeout=30, headers={"Connection": "close"}).json()
        assert ready["ready"] and ready["waiting_for_version"] == [SECOND] and ready["serving"][SECOND] is None

        def answer(article: str) -> requests.Response:
            return requests.post(f"{url}/v1/articles/{article}/predict", data=png_bytes(), timeout=30,
                                 headers={"Content-Type": "image/png", "Connection": "close"})

        def answers() -> dict[str, str | None]:
            got = {a: answer(a) for a in (ARTICLE, SECOND)}
            return {a: r.json()["model"]["version"] if r.status_code == 200 else None for a, r in got.items()}

        waiting = answer(SECOND)
        assert waiting.status_code == 503 and waiting.json()["error"]["code"] == "no_version"
        assert "progattr registry approve --article tops" in waiting.json()["error"]["message"]
        assert answers() == champions
        assert cli(["registry", "approve", "--article", SECOND, "--version", "1", "--by", "dee", "--reason", "first tops",
                    *common]) == 0
        champions[SECOND] = "1"
        deadline, streak = time.time() + 60, 0
        while streak < 6:  # both workers (a new connection each time) on tops' first champion, jeans' unchanged
            assert time.time() < deadline, (answers(), champions)
            got = answers()
            assert got[ARTICLE] == champions[ARTICLE]
            streak = streak + 1 if got == champions else 0
    finally:
        stop(proc, group=True)
        log.close()
