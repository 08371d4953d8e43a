"""Metrics: the paper's Overall column, confusion matrices, averaged precision-recall curves."""

from __future__ import annotations

import numpy as np
import pytest

from progattr_core.metrics import (
    EvaluationReport,
    comparison_table,
    evaluate,
    evaluate_attribute,
    population_stability,
    pr_curve,
    predicted_mix,
)


def test_overall_is_the_mean_of_attribute_accuracies_as_in_the_paper():
    # Paper, Table 3 (Tops, progressive): 69.69, 88.98, 68.18, 75.41 -> Overall 75.57
    report = EvaluationReport("progressive")
    for name, acc in zip("abcd", [0.6969, 0.8898, 0.6818, 0.7541], strict=True):
        m = evaluate_attribute(name, ["x", "y"], np.array([[1.0, 0.0]]), np.array([0]))
        m.accuracy = acc
        report.per_attribute[name] = m
    assert 100 * report.overall == pytest.approx(75.57, abs=0.006)


def test_accuracy_confusion_and_per_class_on_labelled_images_only():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 2, 1, -1])  # the last image is unlabelled: ignored
    m = evaluate_attribute("neck", ["round", "v", "boat"], probs, labels)
    assert m.n == 4 and m.accuracy == 0.75
    assert m.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    row = m.per_class.set_index("class").loc["round"]
    assert row.precision == 0.5 and row.recall == 1.0
    assert m.majority_rate == 0.5


def test_pr_curve_of_a_perfect_classifier():
    probs = np.eye(3)[[0, 1, 2, 0]]
    recall, precision, ap = pr_curve(probs, np.array([0, 1, 2, 0]), points=11)
    assert recall[0] == 1.0 and precision[-1] == 1.0 and ap == pytest.approx(1.0)
    assert np.all(np.diff(recall) <= 1e-12)  # recall never rises with the threshold


def test_comparison_table_has_methods_as_columns_and_an_overall_row():
    labels = np.array([[0, 1], [1, -1], [1, 0]])
    classes = {"a": ["x", "y"], "b": ["p", "q"]}
    good = {"a": np.eye(2)[[0, 1, 1]], "b": np.eye(2)[[1, 0, 0]]}
    bad = {"a": np.eye(2)[[1, 0, 0]], "b": np.eye(2)[[0, 1, 1]]}
    table = comparison_table({"progressive": evaluate("progressive", good, labels, ["a", "b"], classes),
                              "individual": evaluate("individual", bad, labels, ["a", "b"], classes)})
    assert list(table.index) == ["a", "b", "overall"]
    assert table.loc["overall", "progressive"] == 100.0 and table.loc["overall", "individual"] == 0.0
    assert table.loc["a", "majority"] == pytest.approx(66.67)


def test_balanced_accuracy_sees_through_a_majority_class_model():
    labels = np.array([0] * 8 + [1] + [2])             # 80% majority
    always_majority = np.tile([0.8, 0.1, 0.1], (10, 1))
    m = evaluate_attribute("sleeve", ["short", "long", "none"], always_majority, labels)
    assert m.accuracy == m.majority_rate == 0.8
    assert m.balanced_accuracy == pytest.approx(1 / 3) and m.adjusted_balanced_accuracy == pytest.approx(0.0)
    assert m.macro_f1 == pytest.approx(m.majority_score("macro_f1"))  # (2 * 0.8 / 1.8) / 3
    perfect = evaluate_attribute("sleeve", ["short", "long", "none"], np.eye(3)[labels], labels)
    assert perfect.balanced_accuracy == 1.0 and perfect.adjusted_balanced_accuracy == 1.0
    # a fixed class mix that ignores the image is no better than chance either
    mix = evaluate_attribute("sleeve", ["short", "long", "none"], np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]], labels)
    assert mix.adjusted_balanced_accuracy <= 0.0


def test_not_learnt_names_the_attributes_at_chance_and_tables_show_each_metric():
    from progattr_core.metrics import not_learnt

    labels = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])
    classes = {"a": ["x", "y"], "b": ["p", "q"]}
    report = evaluate("progressive", {"a": np.tile([0.9, 0.1], (4, 1)), "b": np.eye(2)[[0, 1, 1, 0]]}, labels,
                      ["a", "b"], classes)
    assert list(not_learnt(report)) == ["a"]
    f1 = comparison_table({"progressive": report}, "macro_f1")
    assert f1.loc["b", "progressive"] == 100.0 and f1.loc["a", "majority"] == pytest.approx(100 * (1.5 / 1.75) / 2, abs=0.01)
    ba = comparison_table({"progressive": report}, "balanced_accuracy")
    assert ba.loc["a", "progressive"] == 50.0 and ba.loc["a", "majority"] == 50.0
    assert ba.loc["overall", "progressive"] == 75.0
    assert report.summaries()["overall"]["balanced_accuracy"] == 0.75


def test_predicted_mix_and_population_stability():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    mix = predicted_mix(probs, ["a", "b", "c"])
    assert mix == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert population_stability({"a": 50, "b": 25, "c": 25}, mix) == pytest.approx(0.0)  # counts or shares
    shifted = population_stability({"a": 10, "b": 45, "c": 45}, mix)
    # by hand: (0.1-0.5)ln(0.1/0.5) + 2 (0.45-0.25)ln(0.45/0.25)
    assert shifted == pytest.approx(-0.4 * np.log(0.2) + 2 * 0.2 * np.log(1.8))
    assert np.isfinite(population_stability({"a": 1}, {"b": 1.0}))  # a class unseen on one side: floored, finite
    assert np.isnan(population_stability({}, mix))
