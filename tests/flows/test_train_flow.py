"""The training flow for real: Prefect's test harness, MLflow on SQLite under tmp, a tiny synthetic
catalogue. A flow killed with SIGKILL mid-stage leaves no process behind (its Prefect temporary server
included), resumes without retraining earlier stages and ends with the weights of an uninterrupted
run; a manifest failing validation stops before training."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from progattr_core.config import load_params
from progattr_core.errors import DataValidationError, ModelError
from progattr_core.model_file import load_model
from tasks.context import make_context
from tests.paths import ROOT
from tests.support import FLOW_ARTICLE, flow_store, make_project, processes_with, stage_runs, stage_weights
from tracking.registry import Registry
from tracking.store import Store

pytestmark = pytest.mark.flows
ARTICLE = FLOW_ARTICLE


def _kill_mid_stage(cmd: list[str], store: Store, env: dict, log: Path, marker: str
                    ) -> tuple[int, dict[int, str], int]:
    """Start the flow in a subprocess; SIGKILL it as soon as a stage >= 2 is running. Returns that
    stage, the processes (other than the flow's own) that carried `marker` meanwhile, and its pid."""
    seen: dict[int, str] = {}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        try:
            while time.time() < deadline and proc.poll() is None:
                seen.update({p: c for p, c in processes_with(marker).items() if p != proc.pid})
                running = [int(r.data.tags["progattr.stage_index"]) for r in store.search({"kind": "stage"}, "RUNNING")]
                if running and running[0] >= 2:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return running[0], seen, proc.pid
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
    raise AssertionError(f"the flow never reached stage 2 (exit {proc.returncode}); log:\n{log.read_text()[-3000:]}")


def test_flow_end_to_end_then_sigkill_mid_stage_resumes_to_the_same_weights(tmp_path, prefect_harness, webhook):
    from flows.train_flow import train_flow

    # Uninterrupted reference run (also the end-to-end test).
    params_a, over_a = make_project(tmp_path / "a")
    # one task per attribute, run concurrently; the gap to the best baseline is not what this test checks
    # (a 1-epoch 32 px model is a coin toss against the individual models, who trail by 0.03 or lead)
    over_a = [*over_a, "baselines.methods=[individual]", "gates.max_gap_to_best_baseline=1"]
    result = train_flow(ARTICLE, "data/raw/mini", str(params_a), over_a)
    assert set(result["accuracy"]) == {"progressive", "individual"}
    assert result["stages_trained"] == list(range(6))
    assert "overall" in result["table"] and result["registry"]["version"] == "1"
    assert "Sharing: " in result["table"]  # validation's word on model.split_points (progressive and individual ran)
    store_a = flow_store(params_a, over_a)
    flow_run = store_a.get_run(result["mlflow_run_id"])
    assert flow_run.info.status == "FINISHED" and flow_run.data.tags["progattr.validation"] == "passed"
    listed = {f.path for f in store_a.client.list_artifacts(result["mlflow_run_id"], "evaluation")}
    assert {"evaluation/pr_curves.png", "evaluation/comparison.csv", "evaluation/metrics.json"} <= listed
    version = store_a.client.get_model_version("progattr-jeans", "1")
    assert version.tags["progattr.data_version"] == result["data"]["data_version"]
    assert "progattr.accuracy.fade" in version.tags and "progattr.git_commit" in version.tags
    assert {"progattr.macro_f1.fade", "progattr.balanced_accuracy.fade"} <= set(version.tags)
    # what a team publishes: per attribute a threshold for serving.target_precision, the coverage at it
    metrics = json.loads((tmp_path / "a/outputs/jeans/evaluation/metrics.json").read_text())
    cov = metrics["progressive"]["coverage"]
    assert set(cov) == {*load_params(params_a).attributes(ARTICLE), "overall"} and "coverage" in metrics["individual"]
    assert "Coverage (%)" in result["table"]
    assert float(version.tags["progattr.coverage.fade"]) == pytest.approx(cov["fade"], abs=1e-4)
    assert version.tags["progattr.target_precision.fade"] == "0.9000"
    registry_a = Registry.of(store_a.cfg)
    registered = load_model(registry_a.download(registry_a.resolve("models:/progattr-jeans/1"), tmp_path / "reg"))
    assert set(registered.calibration) == set(cov) - {"overall"}
    assert registered.calibration["fade"]["threshold"] == pytest.approx(float(version.tags["progattr.threshold.fade"]),
                                                                        abs=1e-4)
    # the approval report: logged with the version, its numbers those of metrics.json, and rendered as a person sees it
    assert version.tags["progattr.report"].endswith("report/report.html")
    assert "report/report.html" in {f.path for f in store_a.client.list_artifacts(result["mlflow_run_id"], "report")}
    check_report(tmp_path / "a/outputs/jeans/evaluation/report.html", metrics["progressive"])
    mix = Registry.of(store_a.cfg).predicted_mix(Registry.of(store_a.cfg).resolve("models:/progattr-jeans/1"))
    assert set(mix) == set(load_params(params_a).attributes(ARTICLE))  # serving's drift reference
    assert all(abs(sum(m.values()) - 1) < 1e-3 for m in mix.values())
    n_stages = len(stage_runs(store_a))
    messages, _ = webhook  # a new version passed its gates: someone should approve it
    assert [(m["event"], m["version"]) for m in messages] == [("awaiting_approval", "1")]
    assert "registry approve --article jeans --version 1" in messages[0]["text"]

    # Same data and params in a second project: killed mid-stage, then run again.
    params_b, over_b = make_project(tmp_path / "b")
    # neither is part of the training key; no 1-epoch 32 px model clears a 0.99 learning gate
    over_b = [*over_b, "baselines.methods=[multilabel_masked]", "gates.min_adjusted_balanced_accuracy=0.99"]
    store_b = flow_store(params_b, over_b)
    # as a new user runs it: no PREFECT_API_URL, so the run starts Prefect's temporary server; every
    # process of the run carries a marker in its environment
    marker = f"progattr-killed-run-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PROGATTR_TEST_MARKER=marker)
    cmd = [sys.executable, "-m", "progattr", "pipeline", "run", "--article", ARTICLE, "--source", "data/raw/mini",
           "--params", str(params_b), *[a for o in over_b for a in ("--set", o)]]
    killed, seen, pid = _kill_mid_stage(cmd, store_b, env, tmp_path / "killed.log", marker)
    before = stage_runs(store_b)
    assert all(before[i] == ["FINISHED"] for i in range(killed)) and before[killed] == ["RUNNING"]
    # nothing outlives the killed run (progattr/cli/watchdog.py): its temporary server included
    assert any("uvicorn" in c or "prefect" in c for c in seen.values()), f"no Prefect server among {seen}"
    deadline = time.time() + 30
    while time.time() < deadline and processes_with(marker):
        time.sleep(0.5)
    assert processes_with(marker) == {}, "left behind by the killed run"
    # nor its temporary files (the killed stage's checkpoint folder was in the run's own TMPDIR)
    assert not list(Path(env.get("TMPDIR") or tempfile.gettempdir()).glob(f"progattr-run-{pid}-*"))

    resumed = train_flow(ARTICLE, "data/raw/mini", str(params_b), over_b)
    after = stage_runs(store_b)
    assert resumed["stages_trained"] == list(range(killed, n_stages))
    for i in range(n_stages):  # earlier stages: still exactly one run each, i.e. not retrained
        expected = ["FINISHED"] if i != killed else ["KILLED", "FINISHED"]
        assert after[i] == expected, (i, after)
    reg = resumed["registry"]  # the learning gate: refused, naming each attribute and its numbers
    assert not reg["challenger"] and any(r.startswith("fade: has not learnt: balanced accuracy") for r in reg["reasons"])
    assert Registry.of(store_b.cfg).alias_version("progattr-jeans", "challenger") is None
    gate_tag = store_b.client.get_model_version("progattr-jeans", reg["version"]).tags["progattr.gate"]
    assert "has not learnt" in gate_tag and "gates.min_adjusted_balanced_accuracy 0.99" in gate_tag
    assert "NOT LEARNT" in resumed["table"] and "Macro-F1" in resumed["table"]
    assert [m["event"] for m in messages[1:]] == ["gate_failed"]  # the killed run never got to register
    assert "fade: has not learnt" in messages[1]["text"] and messages[1]["reasons"] == list(reg["reasons"])
    a, b = stage_weights(tmp_path / "a/outputs/jeans/progressive/model.pt"), stage_weights(tmp_path / "b/outputs/jeans/progressive/model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    render_report(tmp_path / "a/outputs/jeans/evaluation/report.html", tmp_path / "report.png")  # last: it may skip


def check_report(page: Path, metrics: dict) -> None:
    """The report's per-attribute accuracy and coverage are metrics.json's; it fetches nothing."""
    text = page.read_text()
    assert "<script" not in text and not re.search(r'(src|href)="(?!data:)', text)  # self-contained: fetches nothing
    shown = {"accuracy": {a: metrics[a] for a in metrics["coverage"]}, "coverage": metrics["coverage"]}
    for key, values in shown.items():  # metrics.json: accuracy per attribute at the top, coverage under its key
        for attr, value in values.items():
            row = re.search(rf'<tr data-attribute="{attr}">(.*?)</tr>', text, re.S).group(1)
            cell = re.search(rf'class="{key}">([\d.]+|-)<', row).group(1)
            assert cell == ("-" if np.isnan(value) else f"{100 * value:.1f}"), (key, attr, cell, value)
    assert text.count("data:image/png;base64,") >= 3  # curves, confusion matrices, at least one case


def render_report(page: Path, screenshot: Path) -> None:
    """Headless Chromium (Debian's `chromium`) renders the report offline to a screenshot that is not blank."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): the report was checked, not rendered")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={screenshot}", "--window-size=1400,1800", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.shape == (1800, 1400) and pixels.std() > 10  # text, tables and plots, not a blank page


def test_a_manifest_failing_validation_stops_the_flow_before_training(tmp_path, prefect_harness, webhook, caplog):
    from flows.train_flow import train_flow

    params, over = make_project(tmp_path, n=60)
    manifest = tmp_path / "data/raw/mini/jeans/manifest.parquet"
    df = pd.read_parquet(manifest)
    df["fade"] = df["fade"].astype(object)
    df.loc[0, "fade"] = "acid-wash"
    df.to_parquet(manifest)
    over = [*over, "validation.min_class_count=1000", "validation.min_label_coverage_by_attribute={shade: 0.99}"]
    with pytest.raises(DataValidationError) as err:
        train_flow(ARTICLE, "data/raw/mini", str(params), over)
    text = str(err.value)
    assert "expect_column_values_to_be_in_set(fade): observed 1 unexpected rows" in text and "acid-wash" in text
    assert "expect_column_values_to_be_between(train_count, min_value=1000" in text
    assert "expect_column_values_to_not_be_null(shade, mostly=0.99)" in text  # each failure says what to do
    assert re.search(r"what to do: too few images labelled for shade: .* --set "
                     r"'validation.min_label_coverage_by_attribute=\{shade: 0\.\d+\}'", text)
    assert "what to do: classes with too few training images (the attribute=class pairs above): drop them from " \
           "taxonomy.jeans.<attribute>" in text
    messages, token = webhook  # a failed run is announced once, and the webhook's URL is never logged
    assert [m["event"] for m in messages] == ["run_failed"] and "expectations failed" in messages[0]["text"]
    assert messages[0]["flow"] == "progattr-train" and messages[0]["article"] == ARTICLE
    assert token not in caplog.text
    store = flow_store(params, over)
    (flow_run,) = store.search({"kind": "flow"})
    assert flow_run.info.status == "FAILED" and flow_run.data.tags["progattr.validation"] == "failed"
    names = {f.path for f in store.client.list_artifacts(flow_run.info.run_id, "validation")}
    assert {"validation/summary.json", "validation/result.json", "validation/data_docs"} <= names
    assert store.search({"kind": "stage"}) == [] and not (tmp_path / "outputs/jeans/progressive").exists()


def test_distillation_trains_the_teachers_first_and_keys_the_stages_by_them(tmp_path, prefect_harness, caplog):
    """`train.distill: individual` in the flow: the individual models train before progressive, whose
    stages distil from them and are keyed by them; a step-by-step `train` without them is refused."""
    from flows.train_flow import train_flow
    from progattr_core.errors import ConfigError
    from tasks.context import DataRef, baseline_key, train_key
    from tasks.training import run_stage

    params, over = make_project(tmp_path, n=60)
    over = [*over, "baselines.methods=[individual]", "gates.max_gap_to_best_baseline=1"]
    distil = [*over, "train.distill=individual"]
    result = train_flow(ARTICLE, "data/raw/mini", str(params), distil)
    assert set(result["accuracy"]) == {"progressive", "individual"} and result["stages_trained"] == list(range(6))
    store = flow_store(params, distil)
    teachers, stages = store.search({"kind": "baseline"}), store.search({"kind": "stage"})
    assert len(teachers) == 3 and max(r.info.end_time for r in teachers) <= min(r.info.start_time for r in stages)
    assert caplog.text.count("distilling from the individual models") == 6  # every stage trained on them
    ctx, ref = make_context(params, ARTICLE, distil), DataRef(**result["data"])
    assert train_key(ctx, ref) != train_key(make_context(params, ARTICLE, over), ref)  # keyed by what it distils
    other = make_context(params, ARTICLE, [*distil, "baselines.epochs=2"])  # no teachers under that key yet
    with pytest.raises(ConfigError, match=rf"no individual model \(teacher\) of \['fade', 'shade', 'distress'\] "
                                          rf"for jeans under baseline key {baseline_key(other, ref)}: the baselines "
                                          r"train first .* run `progattr pipeline baselines` before"):
        run_stage(other, ref, train_key(other, ref), 0, None)


def test_a_backbone_that_saw_the_test_images_is_refused_before_training(tmp_path, prefect_harness):
    from flows.train_flow import train_flow
    from progattr_core.model import MultiLabelResNet
    from progattr_core.model_file import save_model
    from progattr_core.pretrain import DataLeakageError, lineage_path

    params, over = make_project(tmp_path, n=60)
    manifest = pd.read_parquet(tmp_path / "data/raw/mini/jeans/manifest.parquet")
    seen = manifest.loc[manifest["split"] == "test", "sha256"].iloc[0]
    backbone = save_model(MultiLabelResNet("resnet18", {"colour": ["a", "b"]}, 32, [0.5] * 3, [0.25] * 3),
                          tmp_path / "backbone.pt")
    lineage_path(backbone).write_text(f'{{"sha256": ["{seen}"]}}')
    over = [*over, f"model.init={backbone}"]
    with pytest.raises(DataLeakageError, match=rf"model.init={backbone} was pretrained on 1 image\(s\) of jeans "
                                               rf"\(data version [^)]+\)'s test split .*e.g. {seen[:12]}"):
        train_flow(ARTICLE, "data/raw/mini", str(params), over)
    store = flow_store(params, over)
    (flow_run,) = store.search({"kind": "flow"})
    assert flow_run.info.status == "FAILED" and store.search({"kind": "stage"}) == []


def test_the_training_keys_follow_the_content_of_a_model_init_file(tmp_path):
    """A backbone pretrained again at the same path is a new training, never a resume of the old one."""
    from progattr_core.model import MultiLabelResNet
    from progattr_core.model_file import save_model
    from tasks.context import DataRef, baseline_key, train_key

    data = DataRef("m.parquet", "data", "sha256:d", "data/raw", 10)
    params = ROOT / "params.yaml"
    scratch = make_context(params, ARTICLE, ["model.init=scratch"])
    path = tmp_path / "backbone.pt"

    def keys(seed: int) -> tuple[str, str]:
        save_model(MultiLabelResNet("resnet18", {"colour": ["a", "b"]}, 32, [0.5] * 3, [0.25] * 3, seed=seed), path)
        ctx = make_context(params, ARTICLE, [f"model.init={path}"])
        return train_key(ctx, data), baseline_key(ctx, data)

    first, again, other = keys(0), keys(0), keys(1)
    assert first == again and first[0] != other[0] and first[1] != other[1]
    assert train_key(scratch, data) not in (first[0], other[0])
    path.unlink()
    with pytest.raises(ModelError, match="neither 'scratch', 'imagenet', a models:/ reference nor an existing file"):
        train_key(make_context(params, ARTICLE, [f"model.init={path}"]), data)


def test_the_training_keys_follow_the_compute_that_changes_weights():
    """Another thread count or determinism setting gives other weights: a new training, not a resume.
    `compute.threads: 0` keys by the thread count it resolves to."""
    import torch

    from tasks.branch_add import BaseModelRef, branch_key
    from tasks.context import DataRef, baseline_key, train_key
    from tasks.pretrain import PretrainData, pretrain_key

    data = DataRef("m.parquet", "data", "sha256:d", "data/raw", 10)
    base = BaseModelRef("progattr-jeans", "1", "champion", "base.pt", ("fade", "shade"))
    pretraining = PretrainData("m.parquet", "data", "v", "src", 10, {}, [], {})

    def keys(*over: str) -> tuple[str, ...]:  # every kind of training key (tasks/context.training_key)
        ctx = make_context(ROOT / "params.yaml", ARTICLE, ["profile=", *over])  # not this checkout's registry
        return (train_key(ctx, data), baseline_key(ctx, data), branch_key(ctx, data, base, "distress", "frozen_base"),
                pretrain_key(ctx, pretraining))

    auto = keys("compute.threads=0")
    assert auto == keys()
    other_threads, nondeterministic = keys(f"compute.threads={torch.get_num_threads() + 1}"), keys("compute.deterministic=false")
    assert all(a != b for a, b in zip(auto, other_threads, strict=True))
    assert all(a != b for a, b in zip(auto, nondeterministic, strict=True))
    assert all(a != b for a, b in zip(auto, keys("model.init=imagenet"), strict=True))  # and what it starts from
    torch.set_num_threads(torch.get_num_threads() + 1)  # what `compute.threads: 0` resolves to changed
    try:
        assert all(a != b for a, b in zip(keys(), auto, strict=True))
    finally:
        torch.set_num_threads(torch.get_num_threads() - 1)


def test_git_commit_outside_a_checkout_is_the_image_build_arg(tmp_path, monkeypatch):
    """The Docker image has no .git: lineage tags name the commit it was built from, else `unknown`."""
    from tasks.context import git_commit

    monkeypatch.setenv("PROGATTR_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == "abc123"
    assert len(git_commit(ROOT)) == 40  # a checkout's own commit comes first
    monkeypatch.delenv("PROGATTR_GIT_COMMIT")
    assert git_commit(tmp_path) == "unknown"
