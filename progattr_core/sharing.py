"""Where sharing the Base costs an attribute, and what to share less (`model.split_points`).

Standley et al. (ICML 2020) and Fifty et al. (NeurIPS 2021): tasks that interfere do better sharing
less. Every pipeline run already trains one individual model per attribute beside the progressive
model; an attribute whose individual model beats its Branch on the **validation** split (never test) by
more than `evaluation.split_advice_margin` **and** by more than twice the standard error of the difference
(validation splits of a few hundred images differ by several points between seeds: a split point is not
moved on noise) gets a split point one step earlier, so its Branch owns more of the network."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .params_schema import SPLIT_POINTS


def _lead(progressive: Mapping[str, float], individual: Mapping[str, float]) -> tuple[float, float]:
    """(individual's lead in accuracy, twice the standard error of that difference)."""
    p, q, n = progressive["accuracy"], individual["accuracy"], max(progressive["n"], 1)
    return q - p, 2 * float(np.sqrt((p * (1 - p) + q * (1 - q)) / n))


def choose_split_points(progressive: Mapping[str, Mapping[str, float]], individual: Mapping[str, Mapping[str, float]],
                        split_point: str, current: Mapping[str, str], margin: float) -> dict[str, str]:
    """`current` split points, with one step earlier for every attribute whose individual model leads
    progressive's Branch on validation by more than `margin` and than twice the difference's standard
    error (and that has an earlier point left). Inputs: `metrics.labelled_accuracy` on the validation split."""
    out = dict(current)
    for attr, prog in progressive.items():
        if attr not in individual:
            continue
        lead, noise = _lead(prog, individual[attr])
        point = SPLIT_POINTS.index(current.get(attr, split_point))
        if lead > max(margin, noise) and point > 0:
            out[attr] = SPLIT_POINTS[point - 1]
    return out


def advice(progressive: Mapping[str, Mapping[str, float]], individual: Mapping[str, Mapping[str, float]],
           split_point: str, current: Mapping[str, str], margin: float) -> str:
    """One line for the evaluation's report: where validation says sharing costs, and the exact --set."""
    chosen = choose_split_points(progressive, individual, split_point, current, margin)
    moved = {a: p for a, p in chosen.items() if current.get(a) != p}
    if not moved:
        return (f"Sharing: no attribute's individual model leads its progressive Branch on validation by more than "
                f"{100 * margin:.1f} points (evaluation.split_advice_margin) and than twice the standard error.")
    gaps = ", ".join("{} {:.1f} (+-{:.1f})".format(a, *(100 * v for v in _lead(progressive[a], individual[a])))
                     for a in moved)
    value = "{" + ", ".join(f"{a}: {p}" for a, p in chosen.items()) + "}"
    return (f"Sharing: on validation the individual models lead progressive's Branches by {gaps} points; to share "
            f"less of the Base there, train with --set 'model.split_points={value}' (measured: bench/README.md, "
            f"\"Fine-grained attributes\").")
