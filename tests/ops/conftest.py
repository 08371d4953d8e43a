"""A real Prefect server and a process worker on loopback, and a small project to operate on.

The server (`prefect server start`, with its services: scheduler, triggers, actions) and the worker
(`prefect worker start --type process`) are subprocesses with their own PREFECT_HOME under tmp;
this process talks to them through PREFECT_API_URL (temporary settings, restored afterwards).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT
from tests.support import free_port, stop, tiny_overrides, wait_http

ARTICLE = "jeans"
SECOND = "tops"                    # a second article: its own nightly deployment, served beside the first
NEW_ATTRIBUTE = "distress"
POOL = "progattr-ops-test"
BIN = Path(sys.executable).parent


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), **extra}  # the rest: [tool.prefect] in pyproject.toml (cwd ROOT)


def _restart_api_workers() -> None:
    """Flush and stop this process's Prefect log and event workers: they keep the API URL they started
    with, so without this an in-process flow here would log to (and emit events at) whichever server
    this pytest process talked to before (e.g. tests/flows' harness). The next ones start on the
    current PREFECT_API_URL. Prefect's own test harness does the same when it exits."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """The server's PREFECT_HOME; its output (INFO, with the triggers' and actions' lines) is server.log."""
    return tmp_path_factory.mktemp("prefect-server")


@pytest.fixture(scope="module")
def prefect_server(prefect_home):
    """`prefect server start` on a free loopback port; yields its API URL, set for this process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    log = open(prefect_home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                             "--no-ui"], cwd=ROOT, env=_env(prefect_home, PREFECT_LOGGING_SERVER_LEVEL="INFO"),
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{url}/health", proc, timeout=180)
        with temporary_settings({PREFECT_API_URL: url}):
            _restart_api_workers()
            try:
                yield url
            finally:
                _restart_api_workers()
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, list[str]]:
    """A project with jeans and tops data; the jeans data and taxonomy lack `distress` (kept aside to be
    "added" later)."""
    from progattr_core.config import load_params
    from progattr_core.data.synth import generate_catalogue

    folder = tmp_path_factory.mktemp("project")
    full = load_params(ROOT / "params.yaml")
    raw = folder / "data" / "raw" / "mini"
    for article, n in ((ARTICLE, 120), (SECOND, 200)):  # 200: every tops class in the training split
        generate_catalogue(article, n, raw, full.taxonomy, 32, full.synth.full_label_fraction, full.synth.label_rate,
                           full.synth.label_noise, 0, full.data.split, root=raw, workers=1)
    manifest = raw / ARTICLE / "manifest.parquet"
    shutil.copyfile(manifest, folder / "manifest-with-distress.parquet")
    import pandas as pd

    pd.read_parquet(manifest).drop(columns=[NEW_ATTRIBUTE]).to_parquet(manifest)
    raw_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # Branches that share less of the Base: one trained nightly and served, the added one branch-added
    raw_params["model"]["split_points"] = {"shade": "layer2", NEW_ATTRIBUTE: "layer2"}
    (folder / "params-with-distress.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    del raw_params["taxonomy"][ARTICLE][NEW_ATTRIBUTE]
    del raw_params["model"]["split_points"][NEW_ATTRIBUTE]
    (folder / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    overrides = [*tiny_overrides(folder), "baselines.methods=[]", "pipeline.source=data/raw/mini",
                 f"operations.articles=[{ARTICLE},{SECOND}]", f"operations.work_pool={POOL}", "operations.approval_poll_s=1",
                 "branch_add.epochs_add=1"]
    return folder, overrides


@pytest.fixture
def new_attribute_added(project):
    """What a data team does: the attribute's column into the annotations, its vocabulary into params. Put
    back as they were afterwards, so a test after this one (in any order) sees the data the nightly trained on."""
    folder, _ = project
    files = [folder / "data/raw/mini" / ARTICLE / "manifest.parquet", folder / "params.yaml"]
    saved = {path: path.read_bytes() for path in files}
    shutil.copyfile(folder / "manifest-with-distress.parquet", files[0])
    shutil.copyfile(folder / "params-with-distress.yaml", files[1])
    yield
    for path, content in saved.items():
        path.write_bytes(content)


@pytest.fixture(scope="module")
def worker(prefect_server, project):
    """The project's deployments applied (`progattr deploy`), and a process worker on their pool."""
    from progattr.cli import main as cli

    folder, overrides = project
    assert cli(["deploy", "--params", str(folder / "params.yaml"), "--set", *overrides]) == 0
    names = [f"progattr-nightly/nightly-{ARTICLE}", f"progattr-nightly/nightly-{SECOND}", "progattr-branch-add/branch-add",
             "progattr-approval/approval"]
    home = folder / "worker-home"
    home.mkdir()
    log = open(folder / "worker.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                            cwd=ROOT, env=_env(home, PREFECT_API_URL=prefect_server, PREFECT_WORKER_QUERY_SECONDS="1"),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield names
    finally:
        stop(proc)
        log.close()
