"""Real local components for the flow tests: MLflow on SQLite or a real `mlflow server` on loopback,
and a webhook receiver. No mocks. (Prefect's test harness and the S3-compatible server are in
tests/conftest.py; the shared helpers in tests/support.py.)"""

from __future__ import annotations

import pytest

from tests.paths import ROOT
from tests.support import MlflowServer, tiny_overrides


@pytest.fixture
def params(tmp_path):
    """The project's params with the flow-test profile: tiny, fast, and stores under tmp_path."""
    from progattr_core.config import load_params

    return load_params(ROOT / "params.yaml", tiny_overrides(tmp_path))


@pytest.fixture
def mlflow_server(tmp_path):
    """The project's mlflow/start-server.sh on loopback (one worker), SQLite backend under tmp_path."""
    server = MlflowServer(tmp_path).start()
    try:
        yield server.url
    finally:
        server.stop()


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

