"""The fine-grained benchmark's reporting (issue 31): name-derived attributes apart from the coarse columns,
their goals, and the fine-only taxonomy; end to end on the real catalogue behind -m realdata."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import accuracy, common
from tests.paths import ROOT


def _run(acc: dict[str, float], f1: dict[str, float], adjusted: dict[str, float], majority: float = 0.5) -> dict:
    return {"accuracy": acc, "overall": sum(acc.values()) / len(acc), "macro_f1": f1,
            "overall_macro_f1": sum(f1.values()) / len(f1), "overall_balanced_accuracy": 0.5,
            "adjusted_balanced_accuracy": adjusted, "majority": {a: majority for a in acc},
            "image_passes": 10, "epochs": 3, "train_s": 1.0}


def _seeds() -> list[dict]:
    indiv = _run({"colour": 0.6, "collar": 0.8, "name_pattern": 0.5}, {"colour": 0.3, "collar": 0.6, "name_pattern": 0.2},
                 {"colour": 0.2, "collar": 0.3, "name_pattern": 0.0})
    prog = _run({"colour": 0.5, "collar": 0.9, "name_pattern": 0.7}, {"colour": 0.2, "collar": 0.7, "name_pattern": 0.4},
                {"colour": 0.1, "collar": 0.5, "name_pattern": 0.2})
    runs = {"individual": indiv, "multilabel": indiv, "multilabel_masked": indiv, "progressive": prog}
    return [{"epoch_matched": runs, "compute_matched": runs}] * 2


def test_fine_attributes_are_reported_and_judged_apart_from_the_coarse_ones():
    fine = accuracy.fine_attributes(common.bench_params([]), "tshirts")
    assert fine == ["name_pattern", "collar"]
    tables, summary = accuracy.article_tables("tshirts", _seeds(), "real tshirts", fine)
    rows = {r[0]: r for r in tables[0]["rows"]}
    assert "collar (fine)" in rows and "colour" in rows
    # fine: mean of collar and name_pattern (individual 65, progressive 80); coarse: colour alone
    assert rows["overall fine"][1].startswith("65.00") and rows["overall fine"][4].startswith("80.00")
    assert rows["overall coarse"][1].startswith("60.00") and rows["overall coarse"][4].startswith("50.00")
    goals = {g["name"]: g for g in accuracy.fine_goals("real tshirts", _seeds(), summary, fine)}
    vs = goals["real tshirts, epoch_matched: progressive - individual fine accuracy (points)"]
    assert vs["value"] == pytest.approx(15.0) and vs["met"]
    assert goals["real tshirts, epoch_matched: progressive - individual fine mean macro-F1 (points)"]["value"] == \
        pytest.approx(15.0)
    # the individual model's name_pattern answers the majority class: not learnt, whatever its accuracy
    assert not goals["real tshirts: individual name_pattern chance-adjusted balanced accuracy"]["met"]
    assert goals["real tshirts: progressive name_pattern chance-adjusted balanced accuracy"]["met"]
    assert not any("colour" in name for name in goals)
    epoch_only = [{"epoch_matched": s["epoch_matched"]} for s in _seeds()]  # the fine profile: no compute-matched runs
    tables, summary = accuracy.article_tables("tshirts", epoch_only, "real tshirts", fine)
    assert len(tables) == 1 and list(summary) == ["epoch_matched"]


def test_fine_only_keeps_the_name_derived_attributes_and_imports_no_columns():
    base = common.bench_params([])
    params = common.bench_params(accuracy.fine_only(base, ["tshirts"]))
    assert dict(params.attributes("tshirts")) == {"name_pattern": ("striped", "printed", "solid"),
                                                  "collar": ("polo", "collarless")}
    assert params.imports.kaggle["tshirts"].columns == {}
    assert accuracy.fine_attributes(base, "shirts") == ["name_pattern"]  # one only: --attributes fine leaves it out


@pytest.mark.realdata
def test_fine_profile_end_to_end_then_the_pareto_picture(tmp_path):
    """bench.accuracy --profile fine on 160 real T-shirts (32 px, 1 epoch), then bench.pareto on its results."""
    quick = ["--set", "model.image_size=32", "train.epochs_first=1", "train.epochs_add=1", "baselines.epochs=1"]
    proc = subprocess.run([sys.executable, "-m", "bench.accuracy", "--profile", "fine", "--real-n", "160",
                           "--only", "real tshirts, labels hidden", "--attributes", "fine", "--threads", "1",
                           "--out", str(tmp_path), *quick], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = tmp_path / "accuracy_fine_only_real_tshirts__labels_hidden.json"
    result = json.loads(path.read_text())
    assert "--attributes fine" in result["command"]
    runs = next(iter(result["data"]["catalogues"].values()))["seeds"][0]["epoch_matched"]
    assert set(runs["progressive"]["accuracy"]) == {"name_pattern", "collar"}
    assert any(g["name"].endswith("progressive collar chance-adjusted balanced accuracy") for g in result["goals"])
    proc = subprocess.run([sys.executable, "-m", "bench.pareto", str(path), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "pareto_tshirts.png").stat().st_size > 10_000
    assert "| tshirts | " in (tmp_path / "pareto.md").read_text()
