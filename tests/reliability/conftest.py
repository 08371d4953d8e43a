"""Fixtures of the reliability suite: an MLflow server a test can stop and restart, and the CLI run
against a data root under tmp_path. (Prefect's harness and the S3 server: tests/conftest.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.support import free_port, wait_http

PARAMS = str(ROOT / "params.yaml")


@pytest.fixture
def cli(tmp_path):
    """`progattr ...` through its main(argv), with the data root, raw folder and rejects under tmp_path."""
    from progattr.cli import main

    def run(*argv: str, overrides: tuple[str, ...] = ()) -> int:
        return main([*argv, "--params", PARAMS, "--set", f"data.root={tmp_path}/data",
                     f"data.raw={tmp_path}/data/raw", f"data.rejects={tmp_path}/data/rejects.csv", *overrides])

    return run


class MlflowServer:
    """The project's mlflow/start-server.sh on a fixed loopback port that a test can stop and start
    again (its own process group, so the server's workers go with it)."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> MlflowServer:
        env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{self.folder}/server.db",
               "MLFLOW_ARTIFACTS_DESTINATION": str(self.folder / "server-artifacts"), "MLFLOW_HOST": "127.0.0.1",
               "MLFLOW_PORT": str(self.port), "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
        log = open(self.folder / "mlflow-server.log", "a")
        self.proc = subprocess.Popen([str(ROOT / "mlflow" / "start-server.sh")], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            wait_http(f"{self.url}/health", self.proc, timeout=120)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def mlflow_control(tmp_path):
    server = MlflowServer(tmp_path)
    yield server
    server.stop()
