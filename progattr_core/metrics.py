"""Evaluation (paper section 4.0.1): per-attribute accuracy on the test images labelled for it, and
what users need beside it: macro-F1, per-class precision/recall, confusion matrices, one-vs-rest
precision-recall curves averaged over the attribute's values (the paper's Figure 5), the majority-class
rate, balanced accuracy (mean per-class recall) and its chance-adjusted form, and Overall = mean of
per-attribute accuracies.

On imbalanced classes accuracy alone cannot tell a model that learnt from one that always answers the
majority class: both can score the majority rate. Balanced accuracy can: any prediction that ignores
the image (always the majority, or a fixed class mix) has balanced accuracy <= 1/K over the K classes
present, so `adjusted_balanced_accuracy` = (BA - 1/K) / (1 - 1/K) is <= 0 for every such model and 1
for a perfect one (scikit-learn's `balanced_accuracy_score(adjusted=True)`). `learnt` uses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class AttributeMetrics:
    attribute: str
    classes: list[str]
    n: int
    accuracy: float
    macro_f1: float
    balanced_accuracy: float         # mean recall over the classes present in the labels
    majority_rate: float
    per_class: pd.DataFrame          # class, precision, recall, f1, support
    confusion: np.ndarray            # rows: true class, columns: predicted class
    pr_recall: np.ndarray            # the averaged precision-recall curve, one point per threshold
    pr_precision: np.ndarray
    average_precision: float         # mean over classes with support of one-vs-rest AP

    @property
    def adjusted_balanced_accuracy(self) -> float:
        """(BA - 1/K) / (1 - 1/K) over the K classes present: <= 0 for any prediction that ignores
        the image (the majority class included), 1 for a perfect one; NaN with fewer than 2 classes."""
        k = int((self.per_class.support > 0).sum())
        if k < 2 or np.isnan(self.balanced_accuracy):
            return float("nan")
        return float((self.balanced_accuracy - 1 / k) / (1 - 1 / k))

    def majority_score(self, metric: str) -> float:
        """What always answering the majority class would score on `metric` (the tables' last column)."""
        k = int((self.per_class.support > 0).sum())
        p = self.majority_rate
        scores = {"accuracy": p, "balanced_accuracy": 1 / k if k else float("nan"),
                  "macro_f1": 2 * p / (1 + p) / k if k else float("nan"), "adjusted_balanced_accuracy": 0.0}
        if metric not in scores:
            raise ValueError(f"no majority-class score for metric {metric!r}; known: {sorted(scores)}")
        return scores[metric]

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "balanced_accuracy": self.balanced_accuracy,
                "adjusted_balanced_accuracy": self.adjusted_balanced_accuracy, "majority_rate": self.majority_rate,
                "average_precision": self.average_precision, "n": self.n}


@dataclass
class EvaluationReport:
    method: str
    per_attribute: dict[str, AttributeMetrics] = field(default_factory=dict)

    @property
    def overall(self) -> float:
        """The paper's Overall column: the mean of per-attribute accuracies."""
        return self.mean("accuracy")

    def mean(self, metric: str) -> float:
        """The mean over attributes of one `AttributeMetrics.summary()` metric (NaNs left out)."""
        values = [m.summary()[metric] for m in self.per_attribute.values()]
        values = [v for v in values if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def summaries(self) -> dict[str, dict[str, float]]:
        """attribute -> `AttributeMetrics.summary()`, plus "overall" -> the mean of each metric."""
        out = {a: m.summary() for a, m in self.per_attribute.items()}
        if out:
            out["overall"] = {k: self.mean(k) for k in next(iter(out.values())) if k != "n"}
        return out


def labelled_accuracy(probs: Mapping[str, np.ndarray], labels: np.ndarray, attributes: Sequence[str]
                      ) -> dict[str, dict[str, float]]:
    """Per attribute present in `probs`: accuracy on the rows labelled for it (`labels[:, i]` -1: missing;
    NaN with none) and their number. The one quick score: best-epoch selection and the split-point advice."""
    out = {}
    for i, attr in enumerate(attributes):
        if attr not in probs:
            continue
        keep = labels[:, i] >= 0
        acc = float((probs[attr][keep].argmax(1) == labels[keep, i]).mean()) if keep.any() else float("nan")
        out[attr] = {"accuracy": acc, "n": int(keep.sum())}
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _per_class(conf: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    tp = np.diag(conf).astype(float)
    support, predicted = conf.sum(1).astype(float), conf.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return pd.DataFrame({"class": list(classes), "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int)})


def pr_curve(probs: np.ndarray, y_true: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray, float]:
    """One-vs-rest precision/recall at fixed thresholds, macro-averaged over classes with support."""
    thresholds = np.linspace(0.0, 1.0, points)
    precisions, recalls, aps = [], [], []
    for c in range(probs.shape[1]):
        positive = y_true == c
        if not positive.any():
            continue
        above = probs[:, c][None, :] >= thresholds[:, None]
        tp = (above & positive[None, :]).sum(1).astype(float)
        called = above.sum(1).astype(float)
        precision = np.divide(tp, called, out=np.ones_like(tp), where=called > 0)
        recall = tp / positive.sum()
        precisions.append(precision)
        recalls.append(recall)
        aps.append(_average_precision(probs[:, c], positive))
    if not precisions:
        return np.zeros(points), np.zeros(points), float("nan")
    return np.mean(recalls, 0), np.mean(precisions, 0), float(np.mean(aps))


def _average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / hits.sum())


def evaluate_attribute(attribute: str, classes: Sequence[str], probs: np.ndarray, labels: np.ndarray,
                       pr_points: int = 101) -> AttributeMetrics:
    """Metrics over the images labelled for the attribute (labels == -1 are ignored)."""
    keep = labels >= 0
    y, p = labels[keep].astype(int), probs[keep]
    k = len(classes)
    if len(y) == 0:
        nan = float("nan")
        return AttributeMetrics(attribute, list(classes), 0, nan, nan, nan, nan, _per_class(np.zeros((k, k), int), classes),
                                np.zeros((k, k), int), np.zeros(pr_points), np.zeros(pr_points), nan)
    pred = p.argmax(1)
    conf = confusion_matrix(y, pred, k)
    table = _per_class(conf, classes)
    rec, prec, ap = pr_curve(p, y, pr_points)
    present = table.support > 0
    return AttributeMetrics(attribute, list(classes), int(len(y)), float((pred == y).mean()),
                            float(table.loc[present, "f1"].mean()), float(table.loc[present, "recall"].mean()),
                            float(np.bincount(y).max() / len(y)), table, conf, rec, prec, ap)


def evaluate(method: str, probs: dict[str, np.ndarray], labels: np.ndarray, attributes: Sequence[str],
             classes: dict[str, Sequence[str]], pr_points: int = 101) -> EvaluationReport:
    """A report for one method: `labels` is N x len(attributes) with -1 for missing."""
    report = EvaluationReport(method)
    for j, attr in enumerate(attributes):
        if attr in probs:
            report.per_attribute[attr] = evaluate_attribute(attr, classes[attr], probs[attr], labels[:, j], pr_points)
    return report


def not_learnt(report: EvaluationReport, min_adjusted: float = 0.0) -> dict[str, AttributeMetrics]:
    """The attributes whose chance-adjusted balanced accuracy is at or below `min_adjusted`: with the
    default 0, those whose predictions are no better than always answering the majority class."""
    return {a: m for a, m in report.per_attribute.items()
            if not np.isnan(m.adjusted_balanced_accuracy) and m.adjusted_balanced_accuracy <= min_adjusted}


def comparison_table(reports: dict[str, EvaluationReport], metric: str = "accuracy") -> pd.DataFrame:
    """The paper's Tables 2-4: rows = attributes + Overall, columns = methods (`metric` in %, the
    paper's accuracy by default; "macro_f1" and "balanced_accuracy" make the same table of those)."""
    attrs = list(dict.fromkeys(a for r in reports.values() for a in r.per_attribute))
    data = {m: [100 * r.per_attribute[a].summary()[metric] if a in r.per_attribute else np.nan for a in attrs] +
            [100 * r.mean(metric)] for m, r in reports.items()}
    table = pd.DataFrame(data, index=[*attrs, "overall"])
    majority = [100 * next(r.per_attribute[a].majority_score(metric) for r in reports.values() if a in r.per_attribute)
                for a in attrs]
    table["majority"] = [*majority, np.nan]
    table.index.name = "attribute"
    return table.round(2)


PSI_EPSILON = 1e-4  # a class seen on one side only would give an infinite index


def predicted_mix(probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The share of images predicted as each class (top-1): the reference for `population_stability`."""
    counts = np.bincount(np.asarray(probs).argmax(axis=1), minlength=len(classes)) if len(probs) else np.zeros(len(classes))
    total = max(int(counts.sum()), 1)
    return {c: float(n) / total for c, n in zip(classes, counts, strict=True)}


def population_stability(live: dict[str, float], reference: dict[str, float]) -> float:
    """Population stability index of a live predicted-class mix (counts or shares) against a
    reference mix: sum over classes of (live - ref) * ln(live / ref), shares floored at PSI_EPSILON.
    Common reading: < 0.1 stable, 0.1-0.25 a shift to look at, > 0.25 a large one."""
    classes = sorted(set(live) | set(reference))
    total_live, total_ref = sum(live.values()), sum(reference.values())
    if total_live <= 0 or total_ref <= 0:
        return float("nan")
    p = np.maximum([live.get(c, 0.0) / total_live for c in classes], PSI_EPSILON)
    q = np.maximum([reference.get(c, 0.0) / total_ref for c in classes], PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))
