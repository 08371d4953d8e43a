"""A real `progattr serve` (2 uvicorn workers, subprocess, loopback) over an MLflow SQLite registry
holding two versions of progattr-tops, with bearer-token auth on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.serving.helpers import register_versions, set_alias
from tests.support import free_port, stop, wait_http

TOKEN = "test-token-not-a-secret"
MAX_BODY = 200_000
MAX_PIXELS = 1_000_000


@dataclass(frozen=True)
class Served:
    url: str
    tracking_uri: str
    versions: list[str]
    root: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def predict_url(self, article: str = "tops") -> str:
        return f"{self.url}/v1/articles/{article}/predict"


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    versions: list[str]
    root: Path


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    """progattr-tops v1 (seed 1) and v2 (seed 2) in one SQLite registry for the session (a database
    costs seconds to create); tests that move `champion` leave it on v1."""
    root = tmp_path_factory.mktemp("serving")
    uri, versions = register_versions(root, "tops", [1, 2])
    set_alias(uri, "tops", "champion", versions[0])
    return Registry(uri, versions, root)


@pytest.fixture(scope="session")
def served(registry) -> Served:
    uri, versions, root = registry.tracking_uri, registry.versions, registry.root
    port = free_port()
    cmd = [sys.executable, "-m", "progattr", "serve", "--params", str(ROOT / "params.yaml"), "--articles", "tops",
           "--workers", "2", "--port", str(port), "--host", "127.0.0.1", "--set",
           f"mlflow.tracking_uri={uri}", "serving.poll_interval_s=0.3", f"serving.max_body_bytes={MAX_BODY}",
           "serving.shadow_share=1",
           f"data.image.max_pixels={MAX_PIXELS}"]
    env = {**os.environ, "PROGATTR_SERVE_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics")}
    (root / "metrics").mkdir()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc, timeout=150)
        _wait_all_workers(url, workers=2, timeout=60)
        yield Served(url, uri, versions, root)
    finally:
        stop(proc)
        log.close()


def _wait_all_workers(url: str, workers: int, timeout: float) -> None:
    """Until /readyz has answered 200 from `workers` distinct worker processes."""
    import requests

    deadline, seen = time.monotonic() + timeout, set()
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only workers {sorted(seen)} became ready within {timeout}s")
        r = requests.get(f"{url}/readyz", headers={"Connection": "close"}, timeout=10)
        if r.status_code == 200:
            seen.add(r.json()["worker"])
        time.sleep(0.05)
