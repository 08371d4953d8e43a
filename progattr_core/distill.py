"""Distilling single-attribute teachers into the progressive network, with teacher annealing.

Born-again multi-task networks (Clark et al., ACL 2019, "BAM!") trained one multi-task student on a mix of
the gold label and its single-task teacher's prediction, the teacher's share falling linearly from 1 to 0
over training ("teacher annealing"); the student beat its teachers. Here the teachers are the individual
models every run trains anyway (the gate's baseline), and their predictions also cover the images an
attribute has no label for, which catalogue sparsity leaves plentiful. A teacher's outputs on its own
training images are near one-hot, so they are softened by a temperature (Hinton et al. 2015) first.

Per image and attribute of a training step, with lambda the fraction of the stage's steps done:
- labelled: cross-entropy against lambda * one-hot(gold) + (1 - lambda) * teacher, weighted by the gold
  class's weight (train.class_weighting), as plain cross-entropy is;
- unlabelled: cross-entropy against the teacher, weighted (1 - lambda): the teacher fades out with it.
Each attribute's term is the weighted mean over its rows, summed over attributes. At lambda = 1 on
labelled rows alone it is exactly masked_cross_entropy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DataValidationError
from .predict import predict_proba


def teacher_probabilities(teachers: Mapping[str, nn.Module], images: np.ndarray | Tensor, device: torch.device | str,
                          batch_size: int = 256) -> dict[str, np.ndarray]:
    """attribute -> its single-attribute teacher's class probabilities on every image, labelled or not
    (the rows of a training set's LabelledImages): what Distillation softens."""
    return {a: predict_proba(m, images, batch_size, device, [a])[a] for a, m in teachers.items()}


def soften(probs: np.ndarray | Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) from softmax(logits): p ** (1 / T), renormalised per row."""
    p = torch.as_tensor(probs, dtype=torch.float32).clamp_min(1e-12) ** (1.0 / temperature)
    return p / p.sum(1, keepdim=True)


class Distillation:
    """Teachers' softened class probabilities for every image of a training set (rows aligned with its
    LabelledImages), and the annealed loss a fit uses instead of masked cross-entropy."""

    def __init__(self, probs: Mapping[str, np.ndarray | Tensor], attributes: list[str], temperature: float,
                 class_weights: Mapping[str, Tensor] | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"distillation temperature {temperature} must be > 0")
        self.targets = {a: soften(p, temperature) for a, p in probs.items()}
        self.index = {a: i for i, a in enumerate(attributes)}
        self.weights = class_weights
        lengths = {len(t) for t in self.targets.values()}
        if len(lengths) > 1:
            raise DataValidationError(f"teacher outputs of different lengths {sorted(lengths)}")

    def loss(self, outputs: Mapping[str, Tensor], y: Tensor, idx: Tensor, gold_share: float) -> Tensor:
        """The batch's loss: `idx` are its rows in the training set, `gold_share` is lambda in [0, 1]."""
        total = None
        for attr, logits in outputs.items():
            col = y[:, self.index[attr]]
            rows = torch.ones_like(col, dtype=torch.bool) if len(logits) == len(col) else col >= 0  # branch_rows
            gold = col[rows]
            teacher = self.targets[attr][idx.cpu()].to(logits.device)[rows.cpu()].float()
            labelled = gold >= 0
            target = teacher.clone()
            target[labelled] = ((1.0 - gold_share) * teacher[labelled]
                                + gold_share * F.one_hot(gold[labelled], teacher.shape[1]).float())
            weight = torch.full((len(gold),), 1.0 - gold_share, device=logits.device)
            if self.weights is None:
                weight[labelled] = 1.0
            else:
                weight[labelled] = self.weights[attr].to(logits.device)[gold[labelled]]
            if weight.sum() <= 0:
                continue
            per_row = -(target * F.log_softmax(logits.float(), 1)).sum(1)
            term = (weight * per_row).sum() / weight.sum()
            total = term if total is None else total + term
        if total is None:
            raise DataValidationError("a batch carried nothing to learn for any trained attribute")
        return total
