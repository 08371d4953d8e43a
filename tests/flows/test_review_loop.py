"""The review loop, whole, on tiny data and real components (Prefect's harness, MLflow on SQLite, DVC):
a nightly run registers a version; `progattr tag` sends the answers below their calibrated thresholds
to review.csv; `progattr review export` makes the contact sheet and the table; a person fills it;
`progattr review import` writes the labels into the catalogue; the next nightly run sees a new DVC
data version and retrains on it."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from progattr.cli import main as cli
from progattr_core.data.manifest import read_manifest
from tasks import dvc_store
from tests.support import FLOW_ARTICLE, make_project
from tracking.registry import Registry

pytestmark = pytest.mark.flows


def test_tag_export_fill_import_then_the_nightly_retrains_on_the_reviewed_labels(tmp_path, prefect_harness,
                                                                               monkeypatch, capsys):
    from flows.nightly import nightly_flow

    params_path, overrides = make_project(tmp_path / "p", n=100)
    root = params_path.parent
    dvc_store.run_dvc(root, "init", "--no-scm", "-q")
    monkeypatch.chdir(root)
    overrides = [*overrides, "baselines.methods=[multilabel]", "gates.max_gap_to_best_baseline=1",
                 "pipeline.source=data/raw/mini", "serving.tag_output=tags"]
    first = nightly_flow(FLOW_ARTICLE, "", str(params_path), overrides)
    assert first["skipped"] is False
    Registry(f"sqlite:///{tmp_path / 'p'}/mlflow.db").move_alias(f"progattr-{FLOW_ARTICLE}", "champion",
                                                                 first["registry"]["version"])
    sets = [a for o in overrides for a in ("--set", o)]
    source = root / "data/raw/mini"
    manifest_path = source / FLOW_ARTICLE / "manifest.parquet"
    before = read_manifest(manifest_path)

    # tag the catalogue's unlabelled cells: the ones below their threshold are the review queue
    tag_sets = [*sets, "--set", f"data.root={source}", f"data.manifest={manifest_path}"]
    assert cli(["tag", "--article", FLOW_ARTICLE, "--source", "manifest", *tag_sets]) == 0
    queue = pd.read_csv(root / "tags" / FLOW_ARTICLE / "review.csv")
    assert len(queue) >= 4 and queue["margin"].is_monotonic_increasing

    assert cli(["review", "export", "--article", FLOW_ARTICLE, "--n", "4", "--out", "sheet", *sets]) == 0
    page = (root / "sheet" / "sheet.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 4 and "<script" not in page
    table = pd.read_csv(root / "sheet" / "labels.csv", dtype=str, keep_default_na=False)
    assert list(table["sha256"]) == list(queue["sha256"][:4]) and (table["value"] == "").all()

    # a person fills three rows (one with a value outside the vocabulary) and skips the fourth
    options = table["options"].str.split("|")
    table.loc[0, "value"], table.loc[1, "value"] = options[0][0], options[1][-1]
    table.loc[2, "value"] = "not-a-class"
    table.loc[:2, "annotator"] = "ana"
    table.to_csv(root / "sheet" / "labels.csv", index=False)
    capsys.readouterr()
    assert cli(["review", "import", "--article", FLOW_ARTICLE, "--table", "sheet/labels.csv", *sets]) == 0
    out = capsys.readouterr().out
    assert '"applied": 2' in out and '"rejected": 1' in out and "not-a-class" in out

    after = read_manifest(manifest_path)
    for i in (0, 1):
        row = after[after["sha256"] == table.loc[i, "sha256"]].iloc[0]
        assert row[table.loc[i, "attribute"]] == table.loc[i, "value"]
        assert pd.isna(before[before["sha256"] == table.loc[i, "sha256"]].iloc[0][table.loc[i, "attribute"]])
    reviews = pd.read_csv(source / FLOW_ARTICLE / "reviews.csv")
    assert len(reviews) == 2 and set(reviews["annotator"]) == {"ana"} and reviews["previous"].isna().all()

    # the coverage gate at zero tolerance: the new version is refused exactly where an attribute's
    # coverage fell below the champion's (v1's tags), and says so
    second = nightly_flow(FLOW_ARTICLE, "", str(params_path), [*overrides, "gates.max_coverage_regression_vs_champion=0"])
    assert second["skipped"] is False and second["data_version"] != first["data_version"]
    assert second["data_version"] == dvc_store.tracked_hash(source) and second["stages_trained"]
    registry = Registry(f"sqlite:///{tmp_path / 'p'}/mlflow.db")
    v1, v2 = (registry.version(f"progattr-{FLOW_ARTICLE}", v) for v in (first["registry"]["version"],
                                                                    second["registry"]["version"]))
    dropped = {k.split(".", 2)[2] for k, v in v2.tags.items() if k.startswith("progattr.coverage.")
               and float(v) < float(v1.tags.get(k, "nan"))}
    reasons = [r for r in second["registry"]["reasons"] if "coverage at its target precision" in r]
    assert {r.split(":")[0] for r in reasons} == dropped
    assert second["registry"]["challenger"] is (not second["registry"]["reasons"])
    assert v2.tags["progattr.report"].endswith("report/report.html")  # compared with champion v1
