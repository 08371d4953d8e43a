"""The partitioned import layout for real: `progattr data import` copies what a run found new or changed
into a part of its own and names every copy in the index; ingest `dvc add`s the new parts and the index
(not the catalogue), the data version is the index's hash, and a rebuild's pull brings back exactly the
images that version names, from a real local DVC remote."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from progattr.cli import main
from tasks.tagging import list_catalogue
from tests.paths import ROOT
from tests.unit.data_helpers import params, write_image

ARTICLE = "jeans"


def _dvc(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, check=True, capture_output=True,
                   env={"DVC_NO_ANALYTICS": "1", "PATH": str(Path(sys.executable).parent), "HOME": str(root)})


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copyfile(ROOT / "params.yaml", root / "params.yaml")
    for i in range(3):
        write_image(tmp_path / "shop" / f"{i}.png", seed=i)
    (tmp_path / "labels.csv").write_text("image,fade\n0.png,no-fade\n1.png,light-fade\n2.png,no-fade\n")
    return root


def _sets(root: Path) -> list[str]:
    return [f"data.root={root}/data", f"data.raw={root}/data/raw", f"data.cache={root}/cache",
            f"data.rejects={root}/rejects.csv", f"pipeline.outputs={root}/outputs"]


def _import(root: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["data", "import", "wide", "--table", str(root.parent / "labels.csv"), "--images",
                 str(root.parent / "shop"), "--article", ARTICLE, "--params", str(root / "params.yaml"),
                 "--set", *_sets(root), *extra]) == 0
    return capsys.readouterr().out


def _index(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "data/raw/labels/index/manifest.parquet").set_index("image_id")


def test_a_reimport_copies_only_what_changed_into_a_new_part(project, capsys):
    assert "3 new or changed images copied into raw/labels/parts/" in _import(project, capsys)
    first = _index(project)
    part1 = {p.split("/")[1] for p in first["path"]}
    assert len(part1) == 1 and first["path"]["1.png"] == f"parts/{min(part1)}/1.png"

    write_image(project.parent / "shop" / "1.png", seed=11)  # new content, same name
    write_image(project.parent / "shop" / "3.png", seed=3)  # a new image
    with (project.parent / "labels.csv").open("a") as f:
        f.write("3.png,no-fade\n")
    assert "2 new or changed images copied into" in _import(project, capsys)
    second = _index(project)
    part2 = {p.split("/")[1] for p in second["path"]} - part1
    (p2,) = part2
    assert [second["path"][i].split("/")[1] for i in ("0.png", "1.png", "2.png", "3.png")] == [*part1, p2, *part1, p2]
    assert sorted(f.name for f in (project / "data/raw/labels/parts" / p2).iterdir()) == ["1.png", "3.png"]
    # the older copy stays where the first data version has it; the index names the new one
    assert (project / "data/raw/labels" / first["path"]["1.png"]).read_bytes() != (
        project / "data/raw/labels" / second["path"]["1.png"]).read_bytes()
    assert second["sha256"]["1.png"] != first["sha256"]["1.png"]

    assert "no new or changed images" in _import(project, capsys, "--dest", "raw/labels/")  # the same folder
    assert _index(project).equals(second)
    assert len(list((project / "data/raw/labels/parts").iterdir())) == 2

    # tagging the folder scores the images its index names, not the superseded copy
    items = list_catalogue("data/raw/labels", params(*_sets(project)), str(project), ARTICLE)
    assert {i.image: i.location for i in items} == {
        name: str(project / "data/raw/labels" / path) for name, path in second["path"].items()}


def test_labels_people_gave_outlive_a_reimport_until_the_image_changes(project, capsys):
    from tasks.review import import_review

    _import(project, capsys)
    sha = _index(project)["sha256"]
    (project.parent / "review.csv").write_text(
        f"sha256,attribute,value,annotator\n{sha['0.png']},fade,heavy-fade,ann\n{sha['2.png']},fade,light-fade,ann\n")
    assert import_review(project.parent / "review.csv", project / "data/raw/labels", ARTICLE,
                         params(*_sets(project)))["corrected"] == 2
    assert "kept over the table's: 2" in _import(project, capsys)  # the table still says no-fade for both
    assert _index(project)["fade"].astype(str).to_dict() == {"0.png": "heavy-fade", "1.png": "light-fade",
                                                             "2.png": "light-fade"}
    write_image(project.parent / "shop" / "2.png", seed=12)  # re-shot: the review was of the old picture
    out = _import(project, capsys)
    assert "kept over the table's: 1" in out and "1 new or changed images copied" in out
    assert _index(project)["fade"].astype(str).to_dict() == {"0.png": "heavy-fade", "1.png": "light-fade",
                                                             "2.png": "no-fade"}


def test_ingest_tracks_the_new_parts_and_a_rebuild_pulls_the_version(project, capsys, tmp_path):
    from tasks.context import make_context
    from tasks.dvc_store import DvcError, push, tracked_hash
    from tasks.ingest import ingest
    from tasks.rebuild import RebuildPlan, pull_data
    from tasks.retention import apply_retention

    _dvc(project, "init", "--no-scm", "-q")
    _dvc(project, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    ctx = make_context(project / "params.yaml", ARTICLE,
                       [*_sets(project), f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"], resolve_profile=False)

    _import(project, capsys)
    v1 = ingest(ctx, "data/raw/labels")
    parts = project / "data/raw/labels/parts"
    (p1,) = [p for p in parts.iterdir() if p.is_dir()]
    assert v1.layout == "parts" and v1.data_version == tracked_hash(project / "data/raw/labels/index")
    assert not (project / "data/raw/labels.dvc").exists()  # the folder is not tracked as a whole
    p1_pointer = Path(f"{p1}.dvc").read_text()

    write_image(project.parent / "shop" / "2.png", seed=22)
    _import(project, capsys)
    v2 = ingest(ctx, "data/raw/labels")
    assert v2.data_version != v1.data_version and Path(f"{p1}.dvc").read_text() == p1_pointer
    assert len(list(parts.glob("*.dvc"))) == 2
    manifest = pd.read_parquet(project / "outputs" / ARTICLE / "manifest.parquet")
    assert manifest["path"].str.startswith("raw/labels/parts/").all()

    # every image of the first part changes: retention deletes that part once no ingested manifest names it
    for i in (0, 1):
        write_image(project.parent / "shop" / f"{i}.png", seed=30 + i)
    _import(project, capsys)
    assert apply_retention(ctx, [ARTICLE])["superseded_parts"][ARTICLE]["pruned"] == []  # v2 still names it
    v3 = ingest(ctx, "data/raw/labels")
    report = apply_retention(ctx, [ARTICLE])
    assert [p["part"] for p in report["superseded_parts"][ARTICLE]["pruned"]] == [p1.name]
    assert not p1.exists() and not Path(f"{p1}.dvc").exists()
    assert len([p for p in parts.iterdir() if p.is_dir()]) == len(list(parts.glob("*.dvc"))) == 2

    # a rebuild pulls the first version (its part pruned here, `dvc gc` run) and the last from the remote
    paths = []
    for i, version in enumerate((v1, v3)):
        work = tmp_path / f"work{i}"  # what a rebuild's worktree holds before the pull: the project's DVC config
        work.mkdir()
        _dvc(work, "init", "--no-scm", "-q")
        _dvc(work, "remote", "add", "-d", "local", str(tmp_path / "remote"))
        plan = RebuildPlan(ARTICLE, "progattr-jeans", "1", "",
                           {"data_version": version.data_version, "data_raw": version.raw_dir, "data_layout": "parts"})
        raw = pull_data(project, work, plan)
        index = pd.read_parquet(raw / "index/manifest.parquet")
        assert len(index) == 3 and tracked_hash(raw / "index") == version.data_version
        for row in index.itertuples():
            assert hashlib.sha256((raw / row.path).read_bytes()).hexdigest() == row.sha256
        paths.append(index.set_index("image_id")["path"])
    assert paths[0]["1.png"].startswith(f"parts/{p1.name}/")  # the first version's copy, in the pruned part

    # without a default remote, ingest's push is one DVC command that finds none, and says so by None
    _dvc(project, "remote", "default", "--unset")
    assert push(project, "data/raw/labels/index.dvc") is None
    with pytest.raises(DvcError, match="push to remote 'nowhere'"):
        push(project, "data/raw/labels/index.dvc", remote="nowhere")
