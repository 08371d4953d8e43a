"""Registry approvals on a real MLflow registry (SQLite under tmp): aliases, tags, the audit log,
the gate override, rollback, racing approvals, and the CLI."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from progattr.cli import main as cli
from tasks import approvals
from tests.paths import ROOT
from tracking.registry import Registry
from tracking.store import Store, StoreConfig

NAME = "progattr-jeans"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, list[str]]:
    """Versions 1-4 of progattr-jeans (1-3 passed their gates, 4 failed), built once (MLflow's schema
    migrations take seconds); each test gets a copy of the database."""
    folder = tmp_path_factory.mktemp("registry")
    store = _open(folder / "mlflow.db", folder)
    (folder / "model.json").write_text("{}")
    versions = []
    for gate in ("passed", "passed", "passed", "overall 0.1 trails multilabel 0.5 by 0.4 > tolerance 0.02"):
        run = store.start_run("flow", {"kind": "flow"})
        store.log_artifacts(run, folder / "model.json", "model")
        versions.append(Registry.of(store.cfg).register(NAME, run, {"gate": gate, "accuracy.fade": "0.5"}))
    return folder, versions


def _open(db: Path, folder: Path) -> Store:
    return Store(StoreConfig(f"sqlite:///{db}", "ops", (folder / "art").as_uri(), 2, 0.05))


@pytest.fixture
def registry(template, tmp_path: Path) -> tuple[Registry, approvals.AuditLog, list[str]]:
    folder, versions = template
    shutil.copyfile(folder / "mlflow.db", tmp_path / "mlflow.db")
    return (Registry.of(_open(tmp_path / "mlflow.db", folder).cfg), approvals.AuditLog(tmp_path / "registry-audit.jsonl"),
            versions)


def _alias(registry: Registry, alias: str) -> str | None:
    return registry.alias_version(NAME, alias)


def test_approve_rollback_history_and_the_override(registry):
    reg, audit, (v1, v2, _, v4) = registry
    approvals.approve(reg, audit, "jeans", v1, "ana", "first model")
    moves = approvals.approve(reg, audit, "jeans", v2, "ben", "better fade")
    assert [(m.alias, m.from_version, m.to_version) for m in moves] == [("champion", v1, v2), ("previous", None, v1)]
    assert _alias(reg, "champion") == v2
    tags = reg.client.get_model_version(NAME, v2).tags
    assert tags["progattr.approval.status"] == "approved" and tags["progattr.approval.by"] == "ben"
    assert tags["progattr.approval.gate"] == "passed" and tags["progattr.approval.reason"] == "better fade"

    with pytest.raises(approvals.ApprovalError, match="did not pass its gates .*--override-gates"):
        approvals.approve(reg, audit, "jeans", v4, "cy", "looks fine")
    approvals.approve(reg, audit, "jeans", v4, "cy", "hotfix", override_gates=True)
    assert reg.client.get_model_version(NAME, v4).tags["progattr.approval.override"] == "true"

    approvals.rollback(reg, audit, "jeans", "dee", "v4 breaks sleeves")
    assert _alias(reg, "champion") == v2
    assert _alias(reg, "previous") == v4
    assert reg.client.get_model_version(NAME, v4).tags["progattr.approval.status"] == "rolled_back"

    # A fresh reader (a restart) sees every move with who, when, from, to and why.
    history = approvals.AuditLog(audit.path).read(NAME)
    champion = [(m.action, m.by, m.from_version, m.to_version, m.override) for m in history if m.alias == "champion"]
    assert champion == [("approve", "ana", None, v1, False), ("approve", "ben", v1, v2, False),
                        ("approve", "cy", v2, v4, True), ("rollback", "dee", v4, v2, False)]
    assert all(m.at and m.reason for m in history)


def test_racing_approvals_leave_aliases_and_log_consistent(registry):
    reg, audit, versions = registry
    errors: list[BaseException] = []

    def approve(version: str) -> None:
        try:
            approvals.approve(Registry(reg.tracking_uri, 2, 0.05), approvals.AuditLog(audit.path), "jeans", version,
                              f"u{version}", "race", override_gates=True)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    chain = [m for m in audit.read(NAME) if m.alias == "champion"]
    assert [m.from_version for m in chain] == [None] + [m.to_version for m in chain[:-1]]  # an unbroken chain
    assert sorted(m.to_version for m in chain) == sorted(versions)
    assert _alias(reg, "champion") == chain[-1].to_version
    assert _alias(reg, "previous") == chain[-1].from_version


def test_registry_cli(registry, tmp_path, capsys):
    reg, audit, (v1, v2, v3, _) = registry
    params = ROOT / "params.yaml"
    common = ["--params", str(params), "--set", f"mlflow.tracking_uri={reg.tracking_uri}",
              "mlflow.experiment=ops", f"operations.audit_log={audit.path}"]
    assert cli(["registry", "approve", "--article", "jeans", "--version", v1, "--by", "ana", "--reason", "ok", *common]) == 0
    assert cli(["registry", "approve", "--article", "jeans", "--version", v2, "--by", "ben", "--reason", "ok", *common]) == 0
    assert cli(["registry", "reject", "--article", "jeans", "--version", v3, "--by", "cy", "--reason", "noisy", *common]) == 0
    assert cli(["registry", "rollback", "--article", "jeans", "--by", "dee", "--reason", "bad", *common]) == 0
    assert cli(["registry", "approve", "--article", "jeans", "--version", "4", "--by", "x", "--reason", "y", *common]) == 6
    capsys.readouterr()
    assert cli(["registry", "history", "--article", "jeans", *common]) == 0
    out = capsys.readouterr().out
    assert f"@champion: {v2} -> {v1} (rollback by dee" in out and f"@champion: {v1} -> {v2} (approve by ben" in out
    assert cli(["registry", "show", "--article", "jeans", *common]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["aliases"] == {"champion": v1, "previous": v2, "challenger": None}
    assert shown["versions"][2]["approval.status"] == "rejected"
