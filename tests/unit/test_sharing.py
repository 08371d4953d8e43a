"""The choice of per-attribute split points from validation accuracy (progattr_core.sharing)."""

from __future__ import annotations

import numpy as np

from progattr_core.sharing import advice, choose_split_points, validation_accuracy


def test_validation_accuracy_counts_labelled_rows_only():
    probs = {"a": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), "b": np.array([[0.1, 0.9]] * 3)}
    labels = np.array([[0, -1], [0, -1], [-1, -1]])
    acc = validation_accuracy(probs, labels, ["a", "b"])
    assert acc["a"] == 0.5 and np.isnan(acc["b"])


def test_an_attribute_the_individual_model_leads_by_more_than_the_margin_moves_one_split_earlier():
    prog = {"season": 0.60, "pattern": 0.80, "usage": 0.70, "fit": 0.50}
    indiv = {"season": 0.64, "pattern": 0.81, "usage": 0.75, "fit": 0.40}
    chosen = choose_split_points(prog, indiv, "layer4.1", {"usage": "layer2"}, margin=0.02)
    # season: 4 points ahead -> layer3; pattern: 1 point, within the margin; usage: already at the earliest
    assert chosen == {"season": "layer3", "usage": "layer2"}
    assert choose_split_points(prog, indiv, "layer4.1", {"season": "layer3"}, 0.02)["season"] == "layer2"
    line = advice(prog, indiv, "layer4.1", {}, 0.02)
    assert "season 4.0, usage 5.0" in line and "--set 'model.split_points={season: layer3, usage: layer3}'" in line
    assert "no attribute" in advice(prog, indiv, "layer4.1", {}, 0.10)
