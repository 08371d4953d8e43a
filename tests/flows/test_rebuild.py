"""`progattr registry rebuild` for real: a git + DVC project trains and registers a version, pushes
its data to a local DVC remote; the rebuild checks out that commit in a scratch worktree, pulls the
data version, trains again with that commit's code and gets the same weights and metrics. It never
touches the registry, and a version it cannot rebuild gets an error that says why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from progattr_core.config import load_params
from progattr_core.data.synth import generate_catalogue
from tests.paths import ROOT
from tests.support import tiny_overrides
from tracking.registry import Registry

pytestmark = pytest.mark.flows
ARTICLE = "jeans"
CODE = ("progattr", "progattr_core", "tasks", "tracking", "flows")


def _run(root: Path, *cmd: str) -> str:
    out = subprocess.run(list(cmd), cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def git_dvc_project(root: Path) -> tuple[Path, list[str]]:
    """This repo's code, params and DVC config committed in a fresh git repository with a local DVC
    remote (a relative URL, as `.dvc/config` has it), and a tiny catalogue in data/raw/mini."""
    root.mkdir()
    for name in CODE:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", ".gitignore", "pyproject.toml"):
        shutil.copyfile(ROOT / name, root / name)
    _run(root, "git", "init", "-q")
    _run(root, sys.executable, "-m", "dvc", "init", "-q")
    _run(root, sys.executable, "-m", "dvc", "remote", "add", "-d", "local", ".dvcstore")  # ../.dvcstore in .dvc/config
    _run(root, "git", "add", "-A")
    _run(root, "git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "project")
    p = load_params(root / "params.yaml")
    raw = root / "data" / "raw" / "mini"
    generate_catalogue(ARTICLE, 100, raw, p.taxonomy, 32, p.synth.full_label_fraction, p.synth.label_rate,
                       p.synth.label_noise, 0, p.data.split, root=raw, workers=1)
    return root / "params.yaml", [*tiny_overrides(root), "baselines.methods=[]", "pipeline.source=data/raw/mini"]


def test_a_registered_version_rebuilds_to_the_same_weights_and_metrics(tmp_path, prefect_harness, capsys):
    from progattr.cli import main as cli

    params, over = git_dvc_project(tmp_path / "project")
    root = params.parent
    assert cli(["pipeline", "run", "--article", ARTICLE, "--params", str(params), "--set", *over]) == 0
    assert (root / ".dvcstore").is_dir()  # ingest pushed the data version to the default remote
    registry = Registry(f"sqlite:///{root}/mlflow.db")
    before = registry.aliases("progattr-jeans"), len(registry.versions("progattr-jeans"))
    tags = registry.version("progattr-jeans", "1").tags
    assert tags["progattr.weights_sha256"].startswith("sha256:") and tags["progattr.torch"]
    assert tags["progattr.threads"] and tags["progattr.device_kind"].startswith("cpu:")
    assert tags["progattr.model_init_version"] == "scratch" and tags["progattr.data_raw"] == "data/raw/mini"
    assert tags["progattr.git_dirty"] == "False"
    assert tags["progattr.recipe"].startswith("profile auto -> none: no pretrained resnet18 Base here")  # resolved
    capsys.readouterr()

    assert cli(["registry", "rebuild", "--article", ARTICLE, "--version", "1", "--params", str(params),
                "--set", *over]) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert "progattr-jeans version 1: REPRODUCED (identical weights)" in printed
    assert f"train key: registered {tags['progattr.train_key']}, rebuilt {tags['progattr.train_key']}" in printed
    for line in printed.splitlines():  # per attribute: the tag, the registered model now, the rebuilt model
        if line.strip().startswith(("fade ", "shade ", "distress ", "overall ")):
            tag_now, rebuilt = line.split()[1:4:2], line.split()[4]
            assert tag_now[0] == tag_now[1] == rebuilt, line
    assert (registry.aliases("progattr-jeans"), len(registry.versions("progattr-jeans"))) == before  # registers nothing
    assert "progattr-rebuild" not in _run(root, "git", "worktree", "list")  # the scratch worktree is gone

    # what a rebuild cannot do, it says (exit 8; a rebuild that gives other weights exits 1)
    from tasks.rebuild import RebuildError

    def rebuild() -> str:
        capsys.readouterr()
        assert cli(["registry", "rebuild", "--article", ARTICLE, "--version", "1", "--params", str(params),
                    "--set", *over]) == RebuildError.exit_code
        return capsys.readouterr().err

    registry.set_tags("progattr-jeans", "1", {"data_version": "0" * 32 + ".dir"})
    assert re.search(r"data version 0{32}\.dir \(data/raw/mini\) could not be pulled from the DVC remote; push it",
                     rebuild())
    registry.client.delete_model_version_tag("progattr-jeans", "1", "progattr.weights_sha256")
    from tasks.context import make_context
    from tasks.rebuild import plan

    with pytest.raises(RebuildError, match=re.escape("version 1 lacks the tag(s) ['weights_sha256'] that a rebuild")):
        plan(make_context(params, ARTICLE, over), "1")
    assert "progattr-rebuild" not in _run(root, "git", "worktree", "list")
    assert not any(p.name.startswith("progattr-rebuild-") for p in Path(os.environ.get("TMPDIR", "/tmp")).iterdir()
                   if p.is_dir() and (p / ".git").exists())
