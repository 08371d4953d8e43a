"""Where sharing the Base costs an attribute, and what to share less (`model.split_points`).

Standley et al. (ICML 2020) and Fifty et al. (NeurIPS 2021): tasks that interfere do better sharing
less. Every pipeline run already trains one individual model per attribute beside the progressive
model; an attribute whose individual model beats its Branch on the **validation** split (never test) by
more than `evaluation.split_advice_margin` gets a split point one step earlier, so its Branch owns
more of the network."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .params_schema import SPLIT_POINTS


def validation_accuracy(probs: Mapping[str, np.ndarray], labels: np.ndarray, attributes: list[str]
                        ) -> dict[str, float]:
    """Accuracy per attribute on its labelled rows (label -1: missing); NaN with none."""
    out = {}
    for i, attr in enumerate(attributes):
        if attr not in probs:
            continue
        keep = labels[:, i] >= 0
        out[attr] = float((probs[attr][keep].argmax(1) == labels[keep, i]).mean()) if keep.any() else float("nan")
    return out


def choose_split_points(progressive: Mapping[str, float], individual: Mapping[str, float], split_point: str,
                        current: Mapping[str, str], margin: float) -> dict[str, str]:
    """`current` split points, with one step earlier for every attribute whose individual model is more
    than `margin` ahead of progressive's Branch on validation (and that has an earlier point left)."""
    out = dict(current)
    for attr, acc in progressive.items():
        ahead = individual.get(attr, float("nan")) - acc
        point = SPLIT_POINTS.index(current.get(attr, split_point))
        if ahead > margin and point > 0:
            out[attr] = SPLIT_POINTS[point - 1]
    return out


def advice(progressive: Mapping[str, float], individual: Mapping[str, float], split_point: str,
           current: Mapping[str, str], margin: float) -> str:
    """One line for the evaluation's report: where validation says sharing costs, and the exact --set."""
    chosen = choose_split_points(progressive, individual, split_point, current, margin)
    moved = {a: p for a, p in chosen.items() if current.get(a) != p}
    if not moved:
        return (f"Sharing: no attribute's individual model leads its progressive Branch by more than "
                f"{100 * margin:.1f} points on validation (evaluation.split_advice_margin).")
    gaps = ", ".join(f"{a} {100 * (individual[a] - progressive[a]):.1f}" for a in moved)
    value = "{" + ", ".join(f"{a}: {p}" for a, p in chosen.items()) + "}"
    return (f"Sharing: on validation the individual models lead progressive's Branches by more than "
            f"{100 * margin:.1f} points on {gaps}; to share less of the Base there, train with "
            f"--set 'model.split_points={value}' (measured: bench/README.md, \"Fine-grained attributes\").")
