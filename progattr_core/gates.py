"""The automatic gates for the registry's `challenger` alias: pure decisions over evaluation numbers.

A version becomes `challenger` only when every gate passes; `champion` is a person's approval and
is never set by a gate. The gates' thresholds are params.yaml's `registry` section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: tuple[str, ...]


def decide_challenger(progressive: Mapping[str, float], baselines_overall: Mapping[str, float],
                      champion: Mapping[str, float] | None, max_gap_to_best_baseline: float,
                      max_regression_vs_champion: float, learning: Mapping[str, Mapping[str, float]],
                      min_adjusted_balanced_accuracy: float, coverage: Mapping[str, float] | None = None,
                      champion_coverage: Mapping[str, float] | None = None,
                      max_coverage_regression: float = -1.0) -> GateDecision:
    """The automatic gates for the `challenger` alias.

    `progressive` maps each attribute (and "overall") to test accuracy. It must not trail the best
    baseline's overall accuracy by more than `max_gap_to_best_baseline`, no attribute may fall below
    the current champion's by more than `max_regression_vs_champion`, and every attribute in
    `learning` (attribute -> `AttributeMetrics.summary()`) must have learnt (`learning_reasons`).
    With `max_coverage_regression` >= 0, no attribute's `coverage` (the share of test answers that
    clear its threshold, progattr_core.calibration) may fall below `champion_coverage`'s by more.
    """
    reasons: list[str] = []
    if baselines_overall:
        best = max(baselines_overall, key=baselines_overall.get)
        gap = baselines_overall[best] - progressive["overall"]
        if gap > max_gap_to_best_baseline:
            reasons.append(f"overall {progressive['overall']:.4f} trails {best} {baselines_overall[best]:.4f} "
                           f"by {gap:.4f} > tolerance {max_gap_to_best_baseline}")
    for attr, acc in sorted((champion or {}).items()):
        if attr == "overall" or attr not in progressive:
            continue
        drop = acc - progressive[attr]
        if drop > max_regression_vs_champion:
            reasons.append(f"{attr}: {progressive[attr]:.4f} regresses vs champion {acc:.4f} "
                           f"by {drop:.4f} > tolerance {max_regression_vs_champion}")
    reasons += learning_reasons(learning, min_adjusted_balanced_accuracy)
    reasons += coverage_reasons(coverage or {}, champion_coverage or {}, max_coverage_regression)
    return GateDecision(not reasons, tuple(reasons))


def coverage_reasons(coverage: Mapping[str, float], reference: Mapping[str, float], tolerance: float,
                     against: str = "champion") -> list[str]:
    """One reason per attribute whose coverage at its target precision falls below `reference`'s by
    more than `tolerance` (a share of images; negative: the gate is off)."""
    if tolerance < 0:
        return []
    out = []
    for attr, ref in sorted(reference.items()):
        now = coverage.get(attr, float("nan"))
        if attr == "overall" or math.isnan(now) or math.isnan(ref):
            continue
        if ref - now > tolerance:
            out.append(f"{attr}: coverage at its target precision {now:.4f} regresses vs {against} {ref:.4f} by "
                       f"{ref - now:.4f} > gates.max_coverage_regression_vs_champion {tolerance}")
    return out


def decide_branch_add(accuracy: Mapping[str, float], base_accuracy: Mapping[str, float],
                      learning: Mapping[str, Mapping[str, float]], old_predictions_identical: bool, mode: str,
                      max_regression_vs_base: float, min_adjusted_balanced_accuracy: float,
                      coverage: Mapping[str, float] | None = None, base_coverage: Mapping[str, float] | None = None,
                      max_coverage_regression: float = -1.0) -> GateDecision:
    """The gates of a version that adds one attribute's Branch: no old attribute may fall below the
    base model's accuracy (`base_accuracy`, on the same test images) by more than
    `max_regression_vs_base`, every attribute must have learnt, no old attribute's coverage may
    fall below the base model's (`base_coverage`, with its own calibration) by more than
    `max_coverage_regression`, and `frozen_base` must leave the old attributes' raw predictions bit-identical."""
    old = {a: v for a, v in base_accuracy.items() if a != "overall" and not math.isnan(v)}
    gate = decide_challenger(accuracy, {}, old, 0.0, max_regression_vs_base, learning,
                             min_adjusted_balanced_accuracy)
    reasons = list(gate.reasons) + coverage_reasons(coverage or {}, base_coverage or {}, max_coverage_regression,
                                                    "the base model")
    if mode == "frozen_base" and not old_predictions_identical:
        reasons.append("frozen_base: the old attributes' predictions differ from the base model's")
    return GateDecision(not reasons, tuple(reasons))


def learning_reasons(learning: Mapping[str, Mapping[str, float]], min_adjusted: float) -> list[str]:
    """One reason per attribute that has not learnt: its chance-adjusted balanced accuracy is at or
    below `min_adjusted` (0 = no better than always answering the majority class; see
    progattr_core.metrics). A negative `min_adjusted` turns the gate off."""
    if min_adjusted < 0:
        return []
    out = []
    for attr, m in learning.items():
        adjusted = m["adjusted_balanced_accuracy"]
        if attr == "overall" or math.isnan(adjusted) or adjusted > min_adjusted:
            continue
        out.append(f"{attr}: has not learnt: balanced accuracy {m['balanced_accuracy']:.4f}, chance-adjusted "
                   f"{adjusted:.4f} <= gates.min_adjusted_balanced_accuracy {min_adjusted} (accuracy "
                   f"{m['accuracy']:.4f}, majority-class rate {m['majority_rate']:.4f}, macro-F1 {m['macro_f1']:.4f})")
    return out


# What to try when an attribute has not learnt, best measured first: (what it is, the `--set` overrides, the params
# value that makes it apply). Measured on real T-shirts and shirts' fine attributes (bench/README.md, "Fine-grained
# attributes"). Approving a version that learnt nothing (--override-gates) is never the first advice.
_REMEDIES = (
    ("a Base pretrained on your catalogue's other articles (run `progattr pretrain` first)", ("profile=pretrained",),
     ("model.init", "scratch")),
    ("class-balanced losses against collapsing to the majority class", ("train.class_weighting=sqrt_inverse",),
     ("train.class_weighting", "none")),
)


def learning_advice(current: Mapping[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """The remedies, best measured first, that `current` (params key -> value) has not tried yet:
    (why, `--set` overrides), cumulative (each includes the ones before it)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    sets: tuple[str, ...] = ()
    for why, overrides, (key, untried) in _REMEDIES:
        if current.get(key) == untried:
            sets = (*sets, *overrides)
            out.append((why, sets))
    return out
