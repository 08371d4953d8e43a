"""The challenger gates (pure): trailing the best baseline, regressing vs champion, not learning."""

from __future__ import annotations

import numpy as np

from progattr_core.gates import decide_challenger
from progattr_core.metrics import evaluate

PROG = {"neck": 0.70, "pattern": 0.80, "overall": 0.75}


def test_baseline_and_champion_gates():
    ok = decide_challenger(PROG, {"individual": 0.76}, None, 0.02, 0.02, {}, 0.02)
    assert ok.passed and ok.reasons == ()
    far = decide_challenger(PROG, {"individual": 0.80, "multilabel": 0.6}, None, 0.02, 0.02, {}, 0.02)
    assert not far.passed and "trails individual 0.8000" in far.reasons[0]
    champ = decide_challenger(PROG, {}, {"neck": 0.75, "pattern": 0.79, "overall": 0.77}, 0.02, 0.02, {}, 0.02)
    assert not champ.passed and len(champ.reasons) == 1 and champ.reasons[0].startswith("neck:")


def test_the_coverage_gate_refuses_an_attribute_that_publishes_less_than_the_champion():
    coverage, champion = {"neck": 0.50, "pattern": 0.70, "overall": 0.6}, {"neck": 0.60, "pattern": 0.72}
    gate = decide_challenger(PROG, {}, None, 0.02, 0.02, {}, 0.02, coverage, champion, 0.05)
    assert not gate.passed and gate.reasons == (
        "neck: coverage at its target precision 0.5000 regresses vs champion 0.6000 by 0.1000 > "
        "gates.max_coverage_regression_vs_champion 0.05",)
    assert decide_challenger(PROG, {}, None, 0.02, 0.02, {}, 0.02, coverage, champion, -1).passed  # gate off
    assert decide_challenger(PROG, {}, None, 0.02, 0.02, {}, 0.02, coverage, None, 0.05).passed  # no champion yet


def _majority_and_learnt_report():
    """`neck` always answered with its majority class (accuracy = majority rate 0.8); `pattern` learnt."""
    rng = np.random.default_rng(0)
    neck = np.array([0] * 80 + [1] * 15 + [2] * 5)
    pattern = rng.integers(0, 2, 100)
    probs = {"neck": np.tile([0.7, 0.2, 0.1], (100, 1)),
             "pattern": np.eye(2)[np.where(rng.random(100) < 0.9, pattern, 1 - pattern)]}
    return evaluate("progressive", probs, np.stack([neck, pattern], 1), ["neck", "pattern"],
                    {"neck": ["round", "v", "boat"], "pattern": ["solid", "striped"]})


def test_a_majority_class_model_fails_the_learning_gate_with_its_numbers():
    report = _majority_and_learnt_report()
    learning = {a: m.summary() for a, m in report.per_attribute.items()}
    acc = {**{a: m.accuracy for a, m in report.per_attribute.items()}, "overall": report.overall}
    gate = decide_challenger(acc, {}, None, 0.02, 0.02, learning, 0.02)
    assert not gate.passed and len(gate.reasons) == 1
    assert gate.reasons[0] == ("neck: has not learnt: balanced accuracy 0.3333, chance-adjusted 0.0000 <= "
                               "gates.min_adjusted_balanced_accuracy 0.02 (accuracy 0.8000, majority-class "
                               "rate 0.8000, macro-F1 0.2963)")
    assert decide_challenger(acc, {}, None, 0.02, 0.02, learning, -1.0).passed  # a negative threshold: off


def test_learning_advice_is_cumulative_and_skips_what_is_in_use():
    from progattr_core.gates import learning_advice

    fresh = learning_advice({"model.init": "scratch", "train.class_weighting": "none"})
    assert [sets for _, sets in fresh] == [("profile=pretrained",),
                                           ("profile=pretrained", "train.class_weighting=sqrt_inverse")]
    assert "progattr pretrain" in fresh[0][0]
    assert [s for _, s in learning_advice({"model.init": "imagenet", "train.class_weighting": "none"})] == [
        ("train.class_weighting=sqrt_inverse",)]
    assert learning_advice({"model.init": "/b.pt", "train.class_weighting": "inverse"}) == []


def test_a_refused_version_that_learnt_nothing_gets_remedies_not_an_override(capsys):
    """The CLI after `pipeline run`: exact commands to try, and no `--override-gates` advice."""
    import argparse

    from progattr.cli.pipeline import _print_registry
    from tests.paths import ROOT

    reg = {"name": "progattr-tshirts", "version": "1", "challenger": False, "champion_version": None,
           "reasons": ["collar: has not learnt: balanced accuracy 0.5000, chance-adjusted 0.0000 <= ...",
                       "overall 0.6 trails individual 0.7 by 0.1 > tolerance 0.02"]}
    args = argparse.Namespace(params=str(ROOT / "params.yaml"), overrides=["train.epochs_first=3"])
    scratch = {"profile": "", "model.init": "scratch", "train.class_weighting": "none"}  # what the run resolved
    _print_registry({"registry": reg, "resolved": scratch}, args)
    out = capsys.readouterr().out
    assert "collar: not learnt" in out and "--override-gates" not in out
    assert (f"progattr pipeline run --article tshirts --params {ROOT / 'params.yaml'} --set train.epochs_first=3 "
            "profile=pretrained train.class_weighting=sqrt_inverse") in out
    pretrained = {**scratch, "profile": "pretrained", "model.init": "data/cache/backbones/progattr-backbone-v1/model.pt"}
    _print_registry({"registry": reg, "resolved": pretrained}, args)  # `profile: auto` took a Base: not advised again
    out = capsys.readouterr().out
    assert "profile=pretrained" not in out and "--set train.epochs_first=3 train.class_weighting=sqrt_inverse" in out
    reg = {**reg, "reasons": [reg["reasons"][1]]}  # trailing a baseline only: approving is a person's call
    _print_registry({"registry": reg, "resolved": scratch}, args)
    assert "--override-gates" in capsys.readouterr().out
