"""Secrets come only from the environment and never reach logs, MLflow params/tags, files or error
text; model files are loaded with weights_only=True, so a pickle carrying code is refused unrun.
(The serving side, which refuses paths/URLs/oversized bodies and checks the bearer token, is tested
in tests/serving/test_server.py; a malicious registry version in tests/serving/test_follower.py.)"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from mlflow import MlflowClient

from progattr_core.config import load_params
from progattr_core.errors import ModelError
from progattr_core.model import build_model
from progattr_core.model_file import FORMAT, load_checkpoint, load_model
from tests.paths import ROOT
from tests.support import FLOW_ARTICLE, MLFLOW_HTTP_NO_RETRIES, bucket_with_catalogue

from .conftest import PARAMS

pytestmark = pytest.mark.flows
DB_PASSWORD = "hunter2-db-pw-7f3a"
AWS_SECRET = "wJalrXUtnFEMI-fake-secret-9c1e"


def _cli(project, env: dict, *argv: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "progattr", "-v", *argv, "--article", FLOW_ARTICLE, "--params",
           str(project / "params.yaml")]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **MLFLOW_HTTP_NO_RETRIES, **env}, capture_output=True, text=True, timeout=600)
    return out.returncode, out.stdout + out.stderr


def _files_holding(folder, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for f in folder.rglob("*"):
        if f.is_file() and f.stat().st_size < 5_000_000:
            data = f.read_bytes()
            hits += [f"{f}: {s}" for s in secrets if s.encode() in data]
    return hits


def test_secrets_stay_out_of_logs_mlflow_files_and_errors(tmp_path, mlflow_control, s3_server):
    bucket_with_catalogue(s3_server, tmp_path, "secret-test")
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    mlflow_control.start()
    authed = mlflow_control.url.replace("http://", f"http://ci:{DB_PASSWORD}@")
    env = {"MLFLOW_TRACKING_URI": authed, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_ENDPOINT_URL": s3_server}
    secrets = (DB_PASSWORD, AWS_SECRET)

    rc, out = _cli(project, env, "pipeline", "ingest", "--source", "s3://secret-test/cat")  # debug logging on
    assert rc == 0, out[-3000:]
    rc, more = _cli(project, env, "pipeline", "validate")
    assert rc in (0, 3), more[-3000:]  # 8 images may fail the class-count gate: its report is logged either way
    mlflow_control.stop()
    rc, failed = _cli(project, {**env, "MLFLOW_TRACKING_URI": authed}, "pipeline", "ingest", "--source",
                      "s3://secret-test/cat")
    assert rc == 7 and "http://ci:***@" in failed, failed[-3000:]

    assert [s for s in secrets if s in out + more + failed] == []
    mlflow_control.start()
    client = MlflowClient(mlflow_control.url)
    runs = client.search_runs([client.get_experiment_by_name("progattr").experiment_id])
    assert len(runs) == 2
    recorded = " ".join(f"{k}={v}" for r in runs for k, v in {**r.data.params, **r.data.tags}.items())
    assert "overrides" in recorded and [s for s in secrets if s in recorded] == []
    assert _files_holding(tmp_path, secrets) == []  # project, outputs, MLflow server db and artifacts


def test_the_files_that_may_hold_secrets_are_git_ignored():
    for path in (".dvc/config.local", "mlflow.db"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("loader", ["load_model", "load_checkpoint", "model.init"])
def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path, loader):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"format": FORMAT, "config": {}, "state_dict": {}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises((pickle.UnpicklingError, ModelError)) as err:
        if loader == "load_model":
            load_model(path)
        elif loader == "load_checkpoint":
            load_checkpoint(path)
        else:
            build_model(load_params(PARAMS, [f"model.init={path}", "model.image_size=32"]).model)
    assert "weights_only" in str(err.value) or "Weights only load failed" in str(err.value)
    assert not marker.exists()
