"""Calibration and thresholds (progattr_core.calibration): temperature scaling recovers a known
over-confidence, the threshold reaches its target precision on the data it was chosen on, and a
saved model carries its calibration into predictions (`accepted`)."""

from __future__ import annotations

import numpy as np
import pytest

from progattr_core.calibration import (
    NEVER,
    calibrate_attributes,
    coverage_at,
    expected_calibration_error,
    fit_temperature,
    precision_coverage,
    temper,
    threshold_for,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _overconfident(n: int, seed: int, temperature: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports softmax(z * temperature): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 4))
    labels = np.array([rng.choice(4, p=p) for p in _softmax(z)])
    return _softmax(z * temperature).astype(np.float32), labels


def test_temperature_scaling_recovers_the_over_confidence_and_lowers_the_ece():
    probs, labels = _overconfident(4000, 0)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    before, after = expected_calibration_error(probs, labels), expected_calibration_error(temper(probs, t), labels)
    assert after < 0.03 < before
    assert (temper(probs, t).argmax(1) == probs.argmax(1)).all()  # the answers themselves never change
    labels[:] = -1
    assert fit_temperature(probs, labels) == 1.0 and np.isnan(expected_calibration_error(probs, labels))


def test_the_threshold_is_the_lowest_one_whose_accepted_answers_reach_the_target():
    # confidences 0.9 .. 0.5; right, right, wrong, right, wrong
    probs = np.array([[c, 1 - c] for c in (0.9, 0.8, 0.7, 0.6, 0.55)])
    labels = np.array([0, 0, 1, 0, 1])
    conf, precision, coverage = precision_coverage(probs, labels)
    assert np.allclose(precision, [1, 1, 2 / 3, 3 / 4, 3 / 5]) and np.allclose(coverage, [0.2, 0.4, 0.6, 0.8, 1.0])
    assert threshold_for(probs, labels, 0.75) == pytest.approx(0.6)  # the largest set at >= 75%
    assert threshold_for(probs, labels, 1.0) == pytest.approx(0.8)
    assert coverage_at(probs, labels, 0.6) == pytest.approx((0.8, 0.75))
    wrong = np.array([1, 1, 1, 1, 1])
    assert threshold_for(probs, wrong, 0.5) == NEVER and coverage_at(probs, wrong, NEVER)[0] == 0.0
    tied = np.array([[0.7, 0.3]] * 4)  # equal confidences are accepted or refused together
    assert threshold_for(tied, np.array([0, 0, 0, 1]), 0.8) == NEVER


def test_calibrate_attributes_fits_on_validation_and_measures_on_test():
    val, val_y = _overconfident(3000, 1)
    test, test_y = _overconfident(3000, 2)
    labels_val, labels_test = np.stack([val_y, val_y], 1), np.stack([test_y, np.full_like(test_y, -1)], 1)
    fitted, measured = calibrate_attributes({"a": val, "b": val}, labels_val, {"a": test, "b": test}, labels_test,
                                            ["a", "b"], {"a": 0.9, "b": 0.8})
    assert fitted["a"].target_precision == 0.9 and fitted["b"].target_precision == 0.8
    a = measured["a"]
    assert 0.1 < a["coverage"] < 1.0 and a["precision_at_threshold"] >= 0.87  # chosen on val, held on test
    assert a["ece"] < a["ece_raw"]
    assert np.isnan(measured["b"]["coverage"])  # no labelled test image: nothing to measure
    assert measured["overall"]["coverage"] == pytest.approx(a["coverage"])


def test_a_saved_model_carries_its_calibration_into_predictions(tmp_path):
    import torch

    from progattr_core.model import ProgressiveResNet
    from progattr_core.model_file import load_model, save_model, weights_digest
    from progattr_core.predict import predict, predict_proba

    model = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, "scratch", 0)
    model.add_branch("fade", ["light", "mid", "dark"])
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    raw = predict_proba(model, x)["fade"]
    digest = weights_digest(model)
    model.calibration = {"fade": {"temperature": 0.5, "threshold": float(np.median(temper(raw, 0.5).max(1))),
                                  "target_precision": 0.9}}
    loaded = load_model(save_model(model, tmp_path / "m.pt"))
    assert loaded.calibration == model.calibration and weights_digest(loaded) == digest
    assert np.allclose(predict_proba(loaded, x)["fade"], temper(raw, 0.5), atol=1e-6)
    assert np.array_equal(predict_proba(loaded, x, calibrated=False)["fade"], raw)
    accepted = [p["fade"].accepted for p in predict(loaded, x)]
    assert 0 < sum(accepted) < len(accepted)
    loaded.calibration = {}  # a model registered before calibration: raw probabilities, everything accepted
    assert all(p["fade"].to_dict()["accepted"] is True for p in predict(loaded, x))
