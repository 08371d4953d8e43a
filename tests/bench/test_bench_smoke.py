"""Each benchmark runs end to end on its tiny profile (as CI does) and writes the documented schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.paths import ROOT

TOP_KEYS = {"schema_version", "name", "profile", "created_utc", "git_commit", "git_dirty", "command", "machine",
            "wall_s", "params", "tables", "ratios", "goals", "notes", "data"}
MACHINE_KEYS = {"cores", "torch_threads", "torch", "python", "platform", "cpu", "loadavg_start", "loadavg_end"}


def check_schema(result: dict, name: str) -> None:
    assert set(result) == TOP_KEYS
    assert result["schema_version"] == 1 and result["name"] == name and result["profile"] == "smoke"
    assert MACHINE_KEYS <= set(result["machine"]) and result["machine"]["cores"] >= 1
    assert len(result["machine"]["loadavg_end"]) == 3
    assert result["tables"], "at least one table"
    for table in result["tables"]:
        assert set(table) == {"title", "columns", "rows"}
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table["title"]
    for g in result["goals"]:
        assert set(g) == {"name", "value", "target", "op", "met"} and g["op"] in ("<=", ">=", "<", ">")
    assert all(isinstance(v, (int, float)) or v is None for v in result["ratios"].values())


@pytest.mark.parametrize("name", ["accuracy", "size_speed", "orchestration", "branch_add", "review_loop"])
def test_smoke_profile_writes_schema(name: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    if name == "orchestration":  # as in a fresh clone: no data/bench yet (Prefect's home goes under it)
        env["PROGATTR_BENCH_DATA"] = str(tmp_path / "fresh" / "bench")
    # size_speed: the command's --set must reach its training section too, not only size and speed
    extra = ["--set", "baselines.epochs=2"] if name == "size_speed" else []
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", "--profile", "smoke", "--out", str(tmp_path), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    check_schema(result, name)
    md = (tmp_path / f"{name}.md").read_text()
    assert md.startswith(f"# {name} (profile smoke)") and "| " in md
    if name == "size_speed":
        assert [r["epochs"] for r in result["data"]["training"]["individual"]] == [2]
    if name == "branch_add":  # frozen_base: the old attributes' outputs do not move
        assert result["data"]["identical"] is True and result["goals"][0]["name"] == "branch-add fit time / retrain"
    if name == "review_loop":  # both arms label as many cells, the least-sure ones from the review queue
        (run,) = result["data"]["runs"].values()
        assert run["arms"]["least sure"]["cells"] == run["arms"]["random"]["cells"] > 0 and run["queue"] > 0
    if name == "accuracy":  # every run says where its time went: per progressive stage, per individual model
        for catalogue in result["data"]["catalogues"].values():
            for seed in catalogue["seeds"]:
                for method, run in seed["epoch_matched"].items():
                    assert sum(f["image_passes"] for f in run["fits"]) == run["image_passes"], method
                    assert sum(f["seconds"] for f in run["fits"]) == pytest.approx(run["fit_s"], abs=0.05)
                stages = [f["name"].split(":")[0] for f in seed["epoch_matched"]["progressive"]["fits"]]
                assert stages[0] == "first" and stages[-1] == "final" and "finetune" in stages


def test_stages_smoke_reports_every_stage_and_each_variant(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.stages", "--profile", "smoke", "--threads", "1",
                           "--variant", "train.branch_images=labelled", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "stages.json").read_text())
    check_schema(result, "stages")
    runs = result["data"]["runs"]
    assert list(runs) == ["individual", "progressive", "progressive [train.branch_images=labelled]"]
    stage_tables = [t for t in result["tables"] if t["title"].endswith(": per stage")]
    assert len(stage_tables) == 2
    for table, run in zip(stage_tables, list(runs.values())[1:], strict=True):
        assert [row[0] for row in table["rows"]] == [f["name"] for f in run["fits"]]
        assert sum(row[2] for row in table["rows"]) == run["image_passes"]
        assert sum(row[1] for row in table["rows"]) == pytest.approx(run["fit_s"], abs=0.05)
    assert result["ratios"]["train time progressive / individual"] == pytest.approx(
        runs["progressive"]["fit_s"] / runs["individual"]["fit_s"], rel=1e-3)
    assert result["params"]["variants"] == ["train.branch_images=labelled"]


def test_synth_backbone_smoke_writes_a_backbone_a_run_can_start_from(tmp_path: Path) -> None:
    from progattr_core.config import load_params
    from progattr_core.data.manifest import read_manifest
    from progattr_core.model import build_model
    from progattr_core.model_file import load_model
    from progattr_core.pretrain import DataLeakageError, check_no_leakage, lineage_path

    env = {**os.environ, "PROGATTR_BENCH_DATA": str(tmp_path / "bench")}
    backbone = tmp_path / "backbone.pt"
    proc = subprocess.run([sys.executable, "-m", "bench.synth_backbone", "--profile", "smoke", "--threads", "1",
                           "--backbone", str(backbone), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "synth_backbone.json").read_text())
    check_schema(result, "synth_backbone")
    assert set(result["data"]["heads"]) == {"dresses.shape", "dresses.length", "dresses.hemline",
                                            "dresses.sleeve_style", "dresses.pattern", "dresses.sleeve_length",
                                            "dresses.neck", "jeans.fade", "jeans.shade", "jeans.distress"}
    params = load_params(ROOT / "params.yaml", ["model.image_size=32", f"model.init={backbone}"])
    model = build_model(params.model, 0)  # a tops model starts from it: its Base is the backbone's network
    assert torch.equal(model.state_dict()["base.conv1.weight"], load_model(backbone).state_dict()["net.conv1.weight"])
    jeans = read_manifest(tmp_path / "bench/synth-jeans-n40-seed0-px64/jeans/manifest.parquet")
    assert set(jeans["sha256"]) <= set(json.loads(lineage_path(backbone).read_text())["sha256"])
    with pytest.raises(DataLeakageError, match="was pretrained on 40 image"):  # a jeans run would be refused
        check_no_leakage(str(backbone), jeans["sha256"], "jeans")


def test_accuracy_smoke_distils_progressive_from_the_individual_models(tmp_path: Path) -> None:
    """train.distill=individual: the teachers train first and every progressive stage sees every image.
    progressive_split runs last, with the split points validation chose from the other two."""
    from progattr_core.sharing import choose_split_points

    proc = subprocess.run([sys.executable, "-m", "bench.accuracy", "--profile", "smoke", "--threads", "1", "--out",
                           str(tmp_path), "--set", "train.distill=individual", "evaluation.split_advice_margin=0",
                           "--methods", "progressive_split,individual,progressive"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "accuracy.json").read_text())
    catalogue = next(iter(result["data"]["catalogues"].values()))
    n_train = catalogue["labels"]["n_train"]
    for seed in catalogue["seeds"]:
        runs = seed["epoch_matched"]
        assert list(runs)[0] == "individual"  # the teachers, whatever the seed's rotation
        assert all(f["image_passes"] % n_train == 0 for f in runs["progressive"]["fits"])  # epochs x every image
        assert list(runs)[-1] == "progressive_split"
        chosen = choose_split_points(runs["progressive"]["val_accuracy"], runs["individual"]["val_accuracy"],
                                     "layer3", {}, 0.0)
        assert runs["progressive_split"]["split_points"] == chosen
    assert "train.distill=individual" in result["command"]
