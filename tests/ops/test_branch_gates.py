"""The branch-add gates and schedule, without training: what makes a version `challenger`."""

from __future__ import annotations

import pytest

from progattr_core.config import load_params
from progattr_core.gates import decide_branch_add
from tasks.branch_add import BaseModelRef, BranchEvaluation
from tests.paths import ROOT

PARAMS = load_params(ROOT / "params.yaml",
                     ["branch_add.max_regression_vs_base=0.02", "branch_add.epochs_add=3"])
BASE = {"fade": 0.80, "shade": 0.70}


def _evaluation(fade: float, identical: bool, distress_adjusted: float) -> BranchEvaluation:
    new = {"fade": fade, "shade": 0.70, "distress": 0.5}
    learning = {a: {"accuracy": v, "balanced_accuracy": 0.5, "adjusted_balanced_accuracy": 0.3, "majority_rate": 0.4,
                    "macro_f1": 0.4} for a, v in new.items()}
    learning["distress"]["adjusted_balanced_accuracy"] = distress_adjusted
    return BranchEvaluation({**new, "overall": sum(new.values()) / 3}, {**BASE, "overall": 0.75}, identical, 50,
                            learning)


@pytest.mark.parametrize(("mode", "fade", "identical", "distress", "passed", "reason"), [
    ("frozen_base", 0.80, True, 0.3, True, None),
    ("frozen_base", 0.80, False, 0.3, False, "predictions differ from the base model"),
    ("progressive", 0.79, False, 0.3, True, None),                       # within the 0.02 tolerance
    ("progressive", 0.70, False, 0.3, False, "fade: 0.7000 regresses vs champion 0.8000 by 0.1000 > tolerance 0.02"),
    ("frozen_base", 0.80, True, 0.0, False, "distress: has not learnt: balanced accuracy 0.5000, chance-adjusted 0.0000"),
])
def test_branch_gates(mode, fade, identical, distress, passed, reason):
    e, r = _evaluation(fade, identical, distress), PARAMS.gates
    gate = decide_branch_add(e.accuracy, e.base_accuracy, e.learning, e.old_predictions_identical, mode,
                             PARAMS.branch_add.max_regression_vs_base, r.min_adjusted_balanced_accuracy)
    ok, reasons = gate.passed, gate.reasons
    assert ok is passed
    assert (reason is None and reasons == ()) or any(reason in r for r in reasons)


def test_branch_schedule_uses_the_branch_add_epochs():
    from progattr_core.schedule import branch_add_stages

    base = BaseModelRef("progattr-jeans", "1", "champion", "-", ("fade", "shade"))
    (stage,) = branch_add_stages(list(base.attributes), "distress", PARAMS, "frozen_base")
    assert stage.freeze_base and stage.attributes == ("distress",) and stage.epochs == 3
    stages = branch_add_stages(list(base.attributes), "distress", PARAMS, "progressive")
    assert [s.kind for s in stages] == ["add", "finetune", "final"]
    assert stages[1].attributes == ("fade", "shade", "distress")


def test_attribute_add_refuses_an_attribute_outside_the_taxonomy(capsys):
    from progattr.cli import main as cli

    params = ROOT / "params.yaml"
    assert cli(["attribute", "add", "--article", "jeans", "--attribute", "pocket_style", "--params", str(params)]) == 2
    assert "'pocket_style' is not in taxonomy.jeans ['fade', 'shade', 'distress']" in capsys.readouterr().err
