"""Opt-in (`-m postgres`): the scale-out shape of the registry. A real PostgreSQL from Debian's
packages (initdb + pg_ctl under tmp), the project's mlflow/start-server.sh on it with S3 artifacts on the loopback
S3 server, and the approval code moving aliases through that server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tasks import approvals
from tests.support import MlflowServer, free_port
from tracking.registry import Registry
from tracking.store import Store, StoreConfig

pytestmark = [pytest.mark.postgres, pytest.mark.flows]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def postgres():
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary (the postgres extra)")
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (apt-get install postgresql)")
    # Not under tmp_path: pytest's base folder is private to the user, and the server runs as `postgres`.
    data = Path(tempfile.mkdtemp(prefix="progattr-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "progattr", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
                                 f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "progattr", "mlflow"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://progattr@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def mlflow_on_postgres(postgres, s3_server, tmp_path):  # noqa: F811
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="mlflow-artifacts")
    server = MlflowServer(tmp_path, backend=postgres, artifacts="s3://mlflow-artifacts/progattr",
                          env={"MLFLOW_S3_ENDPOINT_URL": s3_server})
    try:
        yield server.start().url, s3_server
    finally:
        server.stop()


def test_registry_and_approvals_on_postgres_with_s3_artifacts(mlflow_on_postgres, tmp_path):
    import boto3

    url, s3 = mlflow_on_postgres
    store = Store(StoreConfig(url, "ops-postgres", None, 2, 0.2))
    (tmp_path / "model.json").write_text('{"attributes": []}')
    versions = []
    for _ in range(2):
        run = store.start_run("flow", {"kind": "flow"})
        store.log_artifacts(run, tmp_path / "model.json", "model")
        versions.append(Registry.of(store.cfg).register("progattr-jeans", run, {"gate": "passed"}))
    audit, registry = approvals.AuditLog(tmp_path / "audit.jsonl"), Registry.of(store.cfg)
    approvals.approve(registry, audit, "jeans", versions[0], "ana", "first")
    approvals.approve(registry, audit, "jeans", versions[1], "ben", "second")
    approvals.rollback(registry, audit, "jeans", "cy", "undo")
    assert registry.alias_version("progattr-jeans", "champion") == versions[0]
    assert [m.to_version for m in audit.read() if m.alias == "champion"] == [versions[0], versions[1], versions[0]]
    # the artifacts went through the server to S3: the client needed no S3 credentials of its own
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="mlflow-artifacts")["Contents"]]
    assert any(k.endswith("model/model.json") for k in keys)
    assert store.download(store.client.get_model_version("progattr-jeans", versions[1]).run_id, "model/model.json",
                          tmp_path / "dl").read_text() == '{"attributes": []}'
