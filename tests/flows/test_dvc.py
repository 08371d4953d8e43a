"""dvc.yaml for real: `dvc repro` of the whole pipeline on a tiny catalogue; a change to each params
section makes exactly the stages that read it out of date, and an evaluation-only change re-runs only
`evaluate`; push/pull of the data to an S3-compatible server on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from progattr_core.config import load_params
from progattr_core.data.synth import generate_catalogue
from tests.paths import ROOT

pytestmark = pytest.mark.flows
CODE = ("progattr_core", "tasks", "tracking", "flows")


def _dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}  # no analytics process after each command
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, f"dvc {args} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


def _set(params_file: Path, **values) -> None:
    raw = yaml.safe_load(params_file.read_text())
    for dotted, value in values.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture
def dvc_project(tmp_path) -> Path:
    """A DVC project (no git) with this repo's dvc.yaml and code, tiny params, a tracked catalogue."""
    root = tmp_path / "project"
    root.mkdir()
    for name in CODE:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copyfile(ROOT / "params.yaml", root / "params.yaml")
    _set(root / "params.yaml", model__image_size=32, model__split_point="layer4.1", train__article="jeans",
         train__epochs_first=1, train__epochs_add=1, train__batch_size=32, baselines__epochs=1,
         baselines__methods=["multilabel_masked"],
         validation__min_class_count=1, validation__min_label_coverage=0.3, pipeline__source="data/raw/mini")
    p = load_params(root / "params.yaml")
    raw = root / "data/raw/mini"
    generate_catalogue("jeans", 100, raw, p.taxonomy, 32, p.synth.full_label_fraction, p.synth.label_rate,
                       p.synth.label_noise, 0, p.data.split, root=raw, workers=1)
    _dvc(root, "init", "--no-scm", "-q")
    _dvc(root, "add", "-q", "data/raw/mini")
    return root


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


# one change per params section (and per key a stage declares alone) -> the stages that read it: what
# `dvc repro` re-runs first (stages below them re-run only if those change their outputs)
READERS = [
    ({"data__image__max_bytes": 19000000}, {"ingest"}),
    ({"pipeline__source": "data/raw/mini/"}, {"ingest"}),
    ({"validation__min_label_coverage": 0.31}, {"validate"}),
    ({"model__init": "imagenet"}, {"validate", "train", "baselines"}),
    ({"profile": "paper"}, {"validate", "train", "baselines"}),
    ({"profiles__pretrained__train.epochs_first": 4}, {"validate", "train", "baselines"}),
    ({"taxonomy__jeans__fade": ["no-fade", "light-fade", "heavy-fade", "acid-wash"]},
     {"validate", "slice", "train", "baselines"}),
    ({"seed": 1}, {"train", "baselines"}),
    ({"compute__device": "cpu"}, {"train", "baselines"}),
    ({"model__image_size": 40}, {"train", "baselines"}),
    ({"optimizer__lr": 0.003}, {"train", "baselines"}),
    ({"compute__threads": 1}, {"train", "baselines"}),
    ({"baselines__epochs": 2}, {"baselines"}),
    ({"evaluation__pr_points": 51}, {"evaluate"}),
    ({"gates__min_adjusted_balanced_accuracy": 0.05}, {"evaluate"}),
    # read by no stage: the registration gates, stores, serving, operations, the other flows
    ({"gates__max_gap_to_best_baseline": 0.05, "mlflow__retries": 1, "serving__port": 9090,
      "operations__nightly_cron": "0 3 * * *", "branch_add__epochs_add": 3, "synth__n_images": 10,
      "pretrain__epochs": 1, "imports__kaggle__tshirts__article_types": ["Tshirts", "Polos"],
      "retention__keep_runs": 5}, set()),
]


def _changed_stages(root: Path) -> set[str]:
    """The stages `dvc status` finds changed (what `dvc repro` would run first): DVC's own status, in
    this process (what the command prints as JSON; a command's start-up costs seconds, 17 times here)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {name.split(":")[-1] for name in repo.status()}


def test_repro_reruns_only_what_a_param_change_touches(dvc_project):
    root = dvc_project
    first = _dvc(root, "repro")
    for stage in ("ingest", "validate", "slice", "train", "baselines", "evaluate"):
        assert f"Running stage '{stage}'" in first
    original = (root / "params.yaml").read_text()
    for change, readers in READERS:
        _set(root / "params.yaml", **change)
        assert _changed_stages(root) == readers, change
        (root / "params.yaml").write_text(original)
    assert _changed_stages(root) == set()
    assert (root / "outputs/jeans/progressive/model.pt").is_file()
    metrics = _dvc(root, "metrics", "show", "--json")
    assert "progressive" in metrics and "overall" in metrics
    assert (root / "mlflow.db").is_file()  # the default store: SQLite in the project folder
    _set(root / "params.yaml", evaluation__pr_points=51)
    second = _dvc(root, "repro")
    assert "Running stage 'evaluate'" in second
    for stage in ("ingest", "validate", "slice", "train", "baselines"):
        assert f"Running stage '{stage}'" not in second
    assert "up to date" in _dvc(root, "status").lower()


def test_push_and_pull_through_an_s3_server_on_loopback(dvc_project, s3_server):
    import boto3

    root = dvc_project
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="progattr-dvc")
    _dvc(root, "remote", "add", "-d", "s3", "s3://progattr-dvc/store")
    _dvc(root, "remote", "modify", "s3", "endpointurl", s3_server)
    before = _tree_digest(root / "data/raw/mini")
    _dvc(root, "push", "data/raw/mini.dvc")
    objects = boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="progattr-dvc")
    assert objects["KeyCount"] > 0
    shutil.rmtree(root / ".dvc/cache")
    shutil.rmtree(root / "data/raw/mini")
    _dvc(root, "pull", "data/raw/mini.dvc")
    assert _tree_digest(root / "data/raw/mini") == before
    assert "in sync" in _dvc(root, "status", "-c", "data/raw/mini.dvc").lower()


def test_pretraining_is_a_stage_of_its_own_that_a_plain_repro_leaves_alone(dvc_project):
    """pretrain/dvc.yaml: `dvc repro` (the training pipeline) never starts a 10-minute pretraining;
    `dvc repro pretrain/dvc.yaml` runs `progattr pretrain` from the project root with params' paths."""
    root = dvc_project
    (root / "pretrain").mkdir()
    shutil.copyfile(ROOT / "pretrain" / "dvc.yaml", root / "pretrain" / "dvc.yaml")
    catalogue = root / "kaggle"
    catalogue.mkdir()
    (catalogue / "styles.csv").write_text("id,gender,masterCategory\n")
    _set(root / "params.yaml", pretrain__source="kaggle")
    pipeline = _dvc(root, "stage", "list")  # what a plain `dvc repro` runs: the stages of ./dvc.yaml
    assert "ingest" in pipeline and "pretrain" not in pipeline
    alone = _dvc(root, "repro", "--dry", "pretrain/dvc.yaml")
    assert "Running stage 'pretrain/dvc.yaml:pretrain'" in alone and "Running stage 'ingest'" not in alone
    assert "progattr pretrain --out outputs/pretrain/backbone.pt" in alone


def test_retention_gc_keeps_the_current_data_version_and_the_remote_keeps_the_older(dvc_project, tmp_path):
    """`retention.dvc_cache: workspace`: the local cache drops an older data version only when a remote
    is configured; that version still comes back from the remote."""
    from tasks.context import make_context
    from tasks.retention import apply_retention

    root = dvc_project
    ctx = make_context(root / "params.yaml", None, [f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    old_pointer, old_tree = (root / "data/raw/mini.dvc").read_text(), _tree_digest(root / "data/raw/mini")
    (root / "data/raw/mini/extra.txt").write_text("a file only the newer data version has\n")
    first = next((root / "data/raw/mini").rglob("*.jpg"))
    first.write_bytes(first.read_bytes() + b"\0")  # an image that only the older version has in this form
    _dvc(root, "add", "-q", "data/raw/mini")
    cache = root / ".dvc/cache"
    n_before = sum(1 for p in cache.rglob("*") if p.is_file())
    assert apply_retention(ctx, [])["dvc_cache"]["skipped"].startswith("no DVC remote")  # the only copy: kept
    assert sum(1 for p in cache.rglob("*") if p.is_file()) == n_before

    _dvc(root, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    (root / "data/raw/mini.dvc").write_text(old_pointer)
    _dvc(root, "push", "data/raw/mini.dvc")  # every ingest pushes its version
    _dvc(root, "add", "-q", "data/raw/mini")  # back to the newer version in the workspace
    assert apply_retention(ctx, [], dry_run=True)["dvc_cache"]["would_run"] == "dvc gc --workspace --force"
    report = apply_retention(ctx, [])["dvc_cache"]
    assert report["freed_bytes"] > 0 and sum(1 for p in cache.rglob("*") if p.is_file()) < n_before
    assert "up to date" in _dvc(root, "status", "data/raw/mini.dvc").lower()  # the current version is whole
    (root / "data/raw/mini.dvc").write_text(old_pointer)
    _dvc(root, "pull", "-q", "--force", "data/raw/mini.dvc")  # gone from the cache, back from the remote
    assert _tree_digest(root / "data/raw/mini") == old_tree
