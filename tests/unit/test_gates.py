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
                               "registry.min_adjusted_balanced_accuracy 0.02 (accuracy 0.8000, majority-class "
                               "rate 0.8000, macro-F1 0.2963)")
    assert decide_challenger(acc, {}, None, 0.02, 0.02, learning, -1.0).passed  # a negative threshold: off
