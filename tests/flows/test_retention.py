"""Retention for real (Prefect's test harness, MLflow on SQLite, a tiny catalogue): an old training's
checkpoints and baseline model go, its registered version still loads, a run interrupted before
the cleanup resumes after it, the nightly run still says "nothing changed" and the champion serves."""

from __future__ import annotations

import pytest
import torch

from progattr.cli import main as cli
from progattr_core.config import load_params
from serving.follower import ModelFollower
from tests.support import FLOW_ARTICLE, flow_store, make_project
from tracking.registry import Registry

pytestmark = pytest.mark.flows
NAME = f"progattr-{FLOW_ARTICLE}"


def test_retention_keeps_what_versions_a_resume_and_the_nightly_need(tmp_path, prefect_harness, monkeypatch):
    import tasks.training as training
    from flows.nightly import nightly_flow
    from flows.retention import retention_flow
    from flows.train_flow import train_flow

    params, over = make_project(tmp_path / "p", n=80)
    over = [*over, "baselines.methods=[multilabel_masked]", "gates.max_gap_to_best_baseline=1",
            "retention.keep_runs=1"]
    # training A (version 1) fails the learning gate, so it holds no alias: its files may go
    a = train_flow(FLOW_ARTICLE, "data/raw/mini", str(params), [*over, "gates.min_adjusted_balanced_accuracy=0.99"])
    assert a["registry"]["version"] == "1" and not a["registry"]["challenger"]
    # training B (another seed) stops at stage 2, as a power cut would
    over_b = [*over, "seed=1"]
    real = training.train_stage

    def power_cut(model, stage, *args, **kwargs):
        if stage.index == 2:
            raise RuntimeError("power cut")
        return real(model, stage, *args, **kwargs)

    monkeypatch.setattr(training, "train_stage", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        train_flow(FLOW_ARTICLE, "data/raw/mini", str(params), over_b)
    monkeypatch.setattr(training, "train_stage", real)

    store = flow_store(params, over)
    v1 = store.client.get_model_version(NAME, "1").tags
    key_a = v1["progattr.train_key"]
    runs_a = [r for r in store.search({"kind": "stage"}) if r.data.tags["progattr.train_key"] == key_a]
    ids_a = {r.info.run_id for r in runs_a}
    assert len(runs_a) == 6
    # B never got to its baseline: A's stays, the newest baseline training (per kind, keep_runs)
    (baseline_a,) = store.search({"kind": "baseline"})

    dry = retention_flow([FLOW_ARTICLE], str(params), over, dry_run=True)
    assert {p["run_id"] for p in dry["articles"][FLOW_ARTICLE]["pruned"]} == ids_a  # only A's, B's are newer
    assert all(store.artifact_bytes(i, p["artifact"]) > 0 for i, p in
               ((p["run_id"], p) for p in dry["articles"][FLOW_ARTICLE]["pruned"]))  # a dry run deletes nothing
    done = retention_flow([FLOW_ARTICLE], str(params), over)
    pruned = done["articles"][FLOW_ARTICLE]["pruned"]
    assert {p["run_id"] for p in pruned} == ids_a and done["freed_bytes"] == dry["freed_bytes"] > 0
    for run in runs_a:
        after = store.get_run(run.info.run_id)
        assert store.artifact_bytes(run.info.run_id, "checkpoint") == 0
        assert after.data.tags["progattr.status"] == "pruned" and after.data.metrics  # metrics stay
    # a pruned run is never a resume or reuse source again: the same key would train anew
    assert store.find_completed({"kind": "stage", "train_key": key_a, "stage_index": 0}) is None
    assert retention_flow([FLOW_ARTICLE], str(params), over)["articles"][FLOW_ARTICLE]["pruned"] == []  # done once
    registry = Registry.of(store.cfg)
    attributes = set(load_params(params, over).attributes(FLOW_ARTICLE))
    assert set(registry.load(registry.resolve(f"models:/{NAME}/1")).classes) == attributes  # version 1 still loads

    resumed = train_flow(FLOW_ARTICLE, "data/raw/mini", str(params), over_b)  # B's stages 0-1 survived the cleanup
    assert resumed["stages_trained"] == [2, 3, 4, 5] and resumed["registry"]["version"] == "2"

    nightly = nightly_flow(FLOW_ARTICLE, "data/raw/mini", str(params), over_b)
    assert nightly["skipped"] and nightly["reason"] == "nothing changed", nightly
    # now B has its own baseline, the nightly's cleanup takes A's
    assert [p["run_id"] for p in nightly["retention"]["articles"][FLOW_ARTICLE]["pruned"]] == [baseline_a.info.run_id]
    assert store.artifact_bytes(baseline_a.info.run_id, "model") == 0
    assert cli(["registry", "approve", "--article", FLOW_ARTICLE, "--version", "2", "--by", "ana", "--reason", "ok",
                "--params", str(params), "--set", *over_b]) == 0
    served = ModelFollower([FLOW_ARTICLE], registry, "champion", 60).poll_once()
    assert [s.version for s in served] == ["2"]
    with torch.inference_mode():
        out = served[0].model.eval()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert set(out) == set(served[0].model.classes)
