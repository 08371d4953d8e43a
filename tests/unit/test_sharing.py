"""The choice of per-attribute split points from validation accuracy (progattr_core.sharing)."""

from __future__ import annotations

import numpy as np

from progattr_core.metrics import labelled_accuracy
from progattr_core.sharing import advice, choose_split_points


def test_labelled_accuracy_counts_labelled_rows_only():
    probs = {"a": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), "b": np.array([[0.1, 0.9]] * 3)}
    labels = np.array([[0, -1], [0, -1], [-1, -1]])
    acc = labelled_accuracy(probs, labels, ["a", "b"])
    assert acc["a"] == {"accuracy": 0.5, "n": 2} and np.isnan(acc["b"]["accuracy"]) and acc["b"]["n"] == 0


def _acc(values: dict[str, float], n: int) -> dict[str, dict[str, float]]:
    return {a: {"accuracy": v, "n": n} for a, v in values.items()}


def test_an_attribute_the_individual_model_leads_beyond_margin_and_noise_moves_one_split_earlier():
    prog = {"season": 0.60, "pattern": 0.80, "usage": 0.70, "fit": 0.50}
    indiv = {"season": 0.64, "pattern": 0.81, "usage": 0.75, "fit": 0.40}
    big = 10_000  # validation images per attribute: the standard error is ~0.7 points
    chosen = choose_split_points(_acc(prog, big), _acc(indiv, big), "layer4.1", {"usage": "layer2"}, margin=0.02)
    # season: 4 points ahead -> layer3; pattern: 1 point, within the margin; usage: already at the earliest
    assert chosen == {"season": "layer3", "usage": "layer2"}
    assert choose_split_points(_acc(prog, big), _acc(indiv, big), "layer4.1", {"season": "layer3"}, 0.02)["season"] \
        == "layer2"
    # the same 4-point lead on 150 validation images is within twice its standard error (~11 points): no move
    assert choose_split_points(_acc(prog, 150), _acc(indiv, 150), "layer4.1", {}, 0.02) == {}
    line = advice(_acc(prog, big), _acc(indiv, big), "layer4.1", {}, 0.02)
    assert "season 4.0 (+-1.4), usage 5.0 (+-1.3)" in line
    assert "--set 'model.split_points={season: layer3, usage: layer3}'" in line
    assert "no attribute" in advice(_acc(prog, big), _acc(indiv, big), "layer4.1", {}, 0.10)
