"""The training losses: masked per-attribute cross-entropy (a missing label never contributes) and the
class weights that keep an imbalanced attribute from collapsing to its majority class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import DataValidationError

if TYPE_CHECKING:
    from .train import LabelledImages

LossFn = Callable[[dict[str, Tensor], Tensor], Tensor]
WEIGHT_POWERS = {"none": 0.0, "sqrt_inverse": 0.5, "inverse": 1.0}


def class_weights(data: LabelledImages, weighting: str) -> dict[str, Tensor] | None:
    """Per-attribute class weights from the training labels' class counts n_c: n_c ** -power
    (`train.class_weighting`: none 0, sqrt_inverse 0.5, inverse 1, i.e. every class weighs the same in
    the loss), scaled so that the average labelled image weighs 1; None for `none`.

    On imbalanced catalogues an unweighted loss is minimised well by always answering the majority
    class; weighting the rare classes up is the cheapest lever against that collapse."""
    if weighting not in WEIGHT_POWERS:
        raise ValueError(f"train.class_weighting = {weighting!r}; allowed: {list(WEIGHT_POWERS)}")
    power = WEIGHT_POWERS[weighting]
    if power == 0.0:
        return None
    out = {}
    for attr in data.attributes:
        col = data.column(attr)
        counts = torch.bincount(col[col >= 0], minlength=len(data.classes[attr])).double()
        weights = torch.where(counts > 0, counts.clamp_min(1) ** -power, torch.zeros_like(counts))
        scale = (counts * weights).sum() / counts.sum().clamp_min(1)
        out[attr] = (weights / scale.clamp_min(1e-12)).float()
    return out


def masked_cross_entropy(data: LabelledImages, weights: dict[str, Tensor] | None = None) -> LossFn:
    """Sum over attributes of the mean cross-entropy over that attribute's labelled images (weighted
    by class when `weights` come from `class_weights`)."""
    index = {a: i for i, a in enumerate(data.attributes)}

    def loss(outputs: dict[str, Tensor], y: Tensor) -> Tensor:
        total = None
        for attr, logits in outputs.items():
            col = y[:, index[attr]]
            keep = col >= 0
            if keep.any():
                w = None if weights is None else weights[attr].to(logits.device)
                # logits for the whole batch, or (a model run with rows=) for the labelled rows only
                term = F.cross_entropy(logits[keep] if len(logits) == len(col) else logits, col[keep], weight=w)
                total = term if total is None else total + term
        if total is None:
            raise DataValidationError("a batch carried no label for any trained attribute")
        return total

    return loss
