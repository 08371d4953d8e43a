"""Tags a team can publish: calibrated confidence and a per-attribute threshold that reaches a precision.

Per attribute, fitted on the validation split when a version is registered and stored in its model file:

- **temperature scaling** (Guo et al., 2017): q = softmax(log p / T), one T > 0 per attribute fitted by
  minimising the validation negative log-likelihood. For a softmax model log p is the logits up to a
  per-row constant, so this is the usual logits / T; for the multi-label baseline it tempers its
  renormalised sigmoids the same way. The top-1 class never changes, so accuracy does not either.
- **a threshold for a target precision**: the lowest calibrated top-1 confidence t such that the
  validation images answered with confidence >= t are right at least `target` of the time (the
  largest such set). An answer at or above t is *accepted* (publishable); the rest go to review.
  Coverage = the share of labelled images accepted; reported on the test split, which chose nothing.

The expected calibration error (ECE, 15 equal-width bins of top-1 confidence) says how far the
confidence is from the accuracy, before and after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))
NEVER = 1.0 + 1e-6  # the threshold of an attribute whose validation precision never reaches the target


@dataclass(frozen=True)
class AttributeCalibration:
    """What a model file carries per attribute: how to temper its probabilities and where to accept."""

    temperature: float
    threshold: float          # calibrated top-1 probability at or above which an answer is accepted
    target_precision: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, float]) -> AttributeCalibration:
        return cls(float(raw["temperature"]), float(raw["threshold"]), float(raw["target_precision"]))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) row-wise; T = 1 returns the probabilities unchanged."""
    if temperature == 1.0:
        return probs
    z = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(probs.dtype, copy=False)


def _nll(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = log_p / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the negative log-likelihood of `labels` (>= 0 counted) under
    softmax(log probs / T): golden-section search over log T (the NLL is unimodal in it). 1.0 when
    there are no labelled rows."""
    keep = labels >= 0
    if not keep.any():
        return 1.0
    log_p, y = np.log(np.clip(probs[keep].astype(np.float64), 1e-12, 1.0)), labels[keep].astype(int)
    lo, hi = _LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(log_p, y, np.exp(a)), _nll(log_p, y, np.exp(b))
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(log_p, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(log_p, y, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share
    of the labelled rows (top-1 confidence); NaN when none is labelled."""
    keep = labels >= 0
    if not keep.any():
        return float("nan")
    conf, correct = probs[keep].max(axis=1), probs[keep].argmax(axis=1) == labels[keep]
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


def precision_coverage(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the labelled rows sorted by top-1 confidence, highest first: (confidence, precision of the
    rows at or above it, coverage = their share). Ties are resolved so a threshold accepts all of them."""
    keep = labels >= 0
    conf = probs[keep].max(axis=1)
    correct = (probs[keep].argmax(axis=1) == labels[keep]).astype(float)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    n = len(conf)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # the last row of each group of equal confidence: a threshold at that value accepts the whole group
    last = np.r_[conf[1:] != conf[:-1], True]
    hits = np.cumsum(correct)[last]
    count = np.arange(1, n + 1)[last]
    return conf[last], hits / count, count / n


def threshold_for(probs: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest confidence whose accepted set (confidence >= it) has precision >= `target`, taking the
    largest such set; NEVER (accept nothing) when no set reaches it."""
    conf, precision, _ = precision_coverage(probs, labels)
    ok = np.flatnonzero(precision >= target)
    return float(conf[ok[-1]]) if len(ok) else NEVER


def coverage_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(coverage, precision) on the labelled rows when answers at or above `threshold` are accepted;
    precision is NaN when nothing is accepted."""
    keep = labels >= 0
    if not keep.any():
        return float("nan"), float("nan")
    conf = probs[keep].max(axis=1)
    accepted = conf >= threshold
    if not accepted.any():
        return 0.0, float("nan")
    correct = probs[keep].argmax(axis=1) == labels[keep]
    return float(accepted.mean()), float(correct[accepted].mean())


def calibrate(val_probs: np.ndarray, val_labels: np.ndarray, target_precision: float) -> AttributeCalibration:
    """Fit one attribute's temperature and threshold on its validation predictions."""
    temperature = fit_temperature(val_probs, val_labels)
    threshold = threshold_for(temper(val_probs, temperature), val_labels, target_precision)
    return AttributeCalibration(temperature, threshold, float(target_precision))


PUBLISH_METRICS = ("coverage", "precision_at_threshold", "ece_raw", "ece")


def calibrate_attributes(val_probs: Mapping[str, np.ndarray], val_labels: np.ndarray,
                         test_probs: Mapping[str, np.ndarray], test_labels: np.ndarray, attributes: list[str],
                         targets: Mapping[str, float]) -> tuple[dict[str, AttributeCalibration], dict[str, dict[str, float]]]:
    """Per attribute of `attributes` present in the probabilities (labels: N x len(attributes), -1 =
    missing): the calibration fitted on validation, and on test what a team publishing with it gets:
    coverage and precision at its threshold, and the ECE before and after (PUBLISH_METRICS); with
    "overall" = the mean of each over attributes."""
    fitted: dict[str, AttributeCalibration] = {}
    measured: dict[str, dict[str, float]] = {}
    for j, attr in enumerate(attributes):
        if attr not in val_probs or attr not in test_probs:
            continue
        cal = calibrate(val_probs[attr], val_labels[:, j], targets[attr])
        tempered = temper(test_probs[attr], cal.temperature)
        coverage, precision = coverage_at(tempered, test_labels[:, j], cal.threshold)
        fitted[attr] = cal
        measured[attr] = {"coverage": coverage, "precision_at_threshold": precision,
                          "ece_raw": expected_calibration_error(test_probs[attr], test_labels[:, j]),
                          "ece": expected_calibration_error(tempered, test_labels[:, j]),
                          "temperature": cal.temperature, "threshold": cal.threshold,
                          "target_precision": cal.target_precision}
    if measured:
        measured["overall"] = {k: float(np.nanmean([m[k] for m in measured.values()]))
                               if not all(np.isnan(m[k]) for m in measured.values()) else float("nan")
                               for k in PUBLISH_METRICS}
    return fitted, measured
