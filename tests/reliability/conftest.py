"""Fixtures of the reliability suite: the flow suite's real components (Prefect harness, MLflow
server, S3 server on loopback) re-exported, and the CLI run against a data root under tmp_path."""

from __future__ import annotations

import pytest

from tests.flows.conftest import REPO, free_port, mlflow_server, prefect_harness, s3_server, tiny_overrides

__all__ = ["REPO", "free_port", "mlflow_server", "prefect_harness", "s3_server", "tiny_overrides"]

PARAMS = str(REPO / "params.yaml")


@pytest.fixture
def cli(tmp_path):
    """`progattr ...` through its main(argv), with the data root, raw folder and rejects under tmp_path."""
    from progattr_core.cli import main

    def run(*argv: str, overrides: tuple[str, ...] = ()) -> int:
        return main([*argv, "--params", PARAMS, "--set", f"data.root={tmp_path}/data",
                     f"data.raw={tmp_path}/data/raw", f"data.rejects={tmp_path}/data/rejects.csv", *overrides])

    return run
