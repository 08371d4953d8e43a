"""Real local components for the flow tests: Prefect's test harness, MLflow on SQLite or a real
`mlflow server` on loopback, and an S3-compatible server (moto) on loopback. No mocks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (~10 s to start here)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def params(tmp_path):
    """The project's params with the flow-test profile: tiny, fast, and stores under tmp_path."""
    from progattr_core.config import load_params

    return load_params(ROOT / "params.yaml", tiny_overrides(tmp_path))


def tiny_overrides(tmp_path: Path) -> list[str]:
    return [
        "model.image_size=32", "model.split_point=layer4.1", "train.batch_size=32", "train.epochs_first=1",
        "train.epochs_add=1", "train.epochs_finetune=1", "train.epochs_final=1", "baselines.epochs=1",
        "validation.min_class_count=1", "validation.min_label_coverage=0.3",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "mlflow.retry_delay_s=0.1",
        # a 1-epoch 32 px model on ~100 images answers mostly the majority class: the learning gate
        # would refuse every version these tests promote; test_train_flow turns it back on
        "registry.min_adjusted_balanced_accuracy=-1",
    ]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3-compatible server on loopback; dummy credentials for boto3, dvc and mlflow."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def mlflow_server(tmp_path):
    """The project's mlflow/start-server.sh on loopback (one worker), SQLite backend under tmp_path."""
    port = free_port()
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/server.db",
           "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "server-artifacts"), "MLFLOW_HOST": "127.0.0.1",
           "MLFLOW_PORT": str(port), "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen([str(ROOT / "mlflow" / "start-server.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the server spawns workers
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", proc, timeout=240)  # minutes under heavy load; ~15 s idle
        yield url
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it has not gone within a minute."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


@pytest.fixture
def webhook(monkeypatch):
    """A webhook receiver on loopback; PROGATTR_WEBHOOK_URL (params operations.webhook_env) points at
    it with a secret token in its path, as Slack's URLs have. Yields (messages received, the token)."""
    import json
    import threading
    import uuid
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = f"hook-token-{uuid.uuid4().hex}"
    monkeypatch.setenv("PROGATTR_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hooks/{token}")
    yield received, token
    server.shutdown()
    server.server_close()


def processes_with(marker: str) -> dict[int, str]:
    """Live processes whose environment holds `marker` (a run's processes inherit it): pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
