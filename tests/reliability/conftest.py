"""Fixtures of the reliability suite: an MLflow server a test can stop and restart, and the CLI run
against a data root under tmp_path. (Prefect's harness and the S3 server: tests/conftest.py.)"""

from __future__ import annotations

import pytest

from tests.paths import ROOT
from tests.support import MlflowServer

PARAMS = str(ROOT / "params.yaml")


@pytest.fixture
def cli(tmp_path):
    """`progattr ...` through its main(argv), with the data root, raw folder and rejects under tmp_path."""
    from progattr.cli import main

    def run(*argv: str, overrides: tuple[str, ...] = ()) -> int:
        return main([*argv, "--params", PARAMS, "--set", f"data.root={tmp_path}/data",
                     f"data.raw={tmp_path}/data/raw", f"data.rejects={tmp_path}/data/rejects.csv",
                     f"data.cache={tmp_path}/cache", *overrides])

    return run


@pytest.fixture
def mlflow_control(tmp_path):
    server = MlflowServer(tmp_path)
    yield server
    server.stop()
