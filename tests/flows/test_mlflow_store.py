"""tracking/store.py against a real SQLite store and a real `mlflow server` on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from progattr_core.config import load_params
from tests.paths import ROOT
from tests.support import processes_with
from tracking.registry import Registry
from tracking.store import Store, store_config

pytestmark = pytest.mark.flows


def _store(tmp_path, monkeypatch, uri: str = "") -> Store:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = load_params(ROOT / "params.yaml", [f"mlflow.tracking_uri={uri!r}", "mlflow.retry_delay_s=0.1"])
    return Store(store_config(params, tmp_path))


def test_default_store_is_sqlite_in_the_project_with_pinned_artifacts(tmp_path, monkeypatch):
    store = _store(tmp_path, monkeypatch)
    assert store.cfg.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert store.cfg.artifact_location == (tmp_path.resolve() / "mlartifacts").as_uri()
    run = store.start_run("r", {"kind": "flow"})
    (tmp_path / "f.txt").write_text("x")
    store.log_artifacts(run, tmp_path / "f.txt", "a")
    assert (tmp_path / "mlartifacts").is_dir() and (tmp_path / "mlflow.db").is_file()


def test_env_tracking_uri_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    params = load_params(ROOT / "params.yaml")
    assert store_config(params, tmp_path).tracking_uri.endswith("/other.db")


def _stage_cycle(store: Store, tmp_path: Path) -> None:
    """A killed stage run, then a completed one: only the completed one counts."""
    tags = {"kind": "stage", "train_key": "k1", "stage_index": 2}
    killed = store.start_run("stage-2", tags)
    assert store.find_completed(tags) is None
    assert store.close_interrupted(tags) == [killed]
    done = store.start_run("stage-2", tags)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "checkpoint.pt").write_bytes(b"weights")
    store.log_artifacts(done, ckpt, "checkpoint")
    store.finish_run(done)
    found = store.find_completed(tags)
    assert found.info.run_id == done
    got = store.download(done, "checkpoint/checkpoint.pt", tmp_path / "dl")
    assert got.read_bytes() == b"weights"
    statuses = sorted(r.info.status for r in store.search(tags))
    assert statuses == ["FINISHED", "KILLED"]


def _registry_cycle(store: Store, tmp_path: Path) -> None:
    run = store.start_run("flow", {"kind": "flow"})
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "model.pt").write_bytes(b"w")
    (model / "model.json").write_text("{}")
    store.log_artifacts(run, model, "model")
    registry = Registry.of(store.cfg)
    v1 = registry.register("progattr-test", run, {"data_version": "d1"})
    v2 = registry.register("progattr-test", run, {"data_version": "d2"})
    assert (v1, v2) == ("1", "2")
    assert registry.version("progattr-test", v2).tags["progattr.approval.status"] == "pending"  # a person decides
    assert registry.alias_version("progattr-test", "challenger") is None and registry.version("progattr-test", "9") is None
    registry.move_alias("progattr-test", "challenger", v2)
    assert registry.alias_version("progattr-test", "challenger") == "2"
    assert registry.listing("test") == [{"version": "1", "aliases": []}, {"version": "2", "aliases": ["challenger"]}]
    assert [str(v.version) for v in registry.versions_with_tags("progattr-test", {"data_version": "d1"})] == ["1"]
    registry.move_alias("progattr-test", "challenger", None)
    assert registry.aliases("progattr-test") == {} and registry.versions("progattr-nothing") == []


def test_stage_checkpoints_and_registry_on_sqlite(tmp_path, monkeypatch):
    store = _store(tmp_path, monkeypatch)
    _stage_cycle(store, tmp_path)
    _registry_cycle(store, tmp_path)


def test_stage_checkpoints_and_registry_on_a_real_server(tmp_path, monkeypatch, mlflow_server):
    store = _store(tmp_path, monkeypatch, uri=mlflow_server)
    assert store.cfg.artifact_location is None  # the server decides (proxied artifacts)
    _stage_cycle(store, tmp_path)
    _registry_cycle(store, tmp_path)
    assert list((tmp_path / "server-artifacts").rglob("checkpoint.pt"))
    # the server alone: no MLflow job runner beside it (mlflow/server.env; 7 processes, 1.9 GB at each start)
    server = processes_with(f"MLFLOW_ARTIFACTS_DESTINATION={tmp_path / 'server-artifacts'}\0")
    assert server and not [cmd for cmd in server.values() if "huey" in cmd], server


def test_retries_stop_at_permanent_errors(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    store = _store(tmp_path, monkeypatch)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection reset")
        return "ok"

    assert store._call(flaky) == "ok" and len(calls) == 3
    with pytest.raises(MlflowException):
        store.get_run("0" * 32)
