"""Distillation with teacher annealing (progattr_core/distill.py): what its loss touches, and how it anneals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from progattr_core.distill import Distillation, soften
from progattr_core.losses import class_weights, masked_cross_entropy
from progattr_core.model import build_model
from progattr_core.schedule import build_schedule
from progattr_core.stages import train_stage


def _teachers(data, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {a: rng.dirichlet(np.ones(len(data.classes[a])), len(data)).astype(np.float32) for a in data.attributes}


def test_soften_keeps_the_ranking_and_flattens():
    p = torch.tensor([[0.97, 0.02, 0.01]])
    assert torch.allclose(soften(p, 1.0), p)
    warm = soften(p, 3.0)
    assert torch.allclose(warm.sum(1), torch.ones(1)) and warm.argmax() == 0 and warm[0, 0] < 0.9
    with pytest.raises(ValueError, match="temperature 0 must be > 0"):
        Distillation({}, [], 0)


@pytest.mark.parametrize("weighting", ["none", "sqrt_inverse"])
def test_at_full_gold_share_it_is_the_masked_cross_entropy(tiny_data, weighting):
    """lambda = 1: teachers and unlabelled rows contribute nothing: exactly the loss without distillation."""
    w = class_weights(tiny_data, weighting)
    y, idx = tiny_data.labels[:8], torch.arange(8)
    logits = {a: torch.randn(8, len(tiny_data.classes[a]), requires_grad=True) for a in ("fade", "shade")}
    got = Distillation(_teachers(tiny_data), tiny_data.attributes, 2.0, w).loss(logits, y, idx, 1.0)
    assert torch.allclose(got, masked_cross_entropy(tiny_data, w)(logits, y))
    got.backward()
    unlabelled = y[:, 1] < 0
    assert unlabelled.any() and logits["shade"].grad[unlabelled].abs().sum() == 0


def test_at_zero_gold_share_it_learns_the_teacher_on_every_row_and_ignores_the_gold(tiny_data):
    teachers = _teachers(tiny_data)
    d = Distillation(teachers, tiny_data.attributes, 2.0)
    idx = torch.tensor([5, 1, 30, 7])  # the teacher's rows follow the batch's rows in the training set
    y = tiny_data.labels[idx]
    logits = {"distress": torch.randn(4, len(tiny_data.classes["distress"]), requires_grad=True)}
    got = d.loss(logits, y, idx, 0.0)
    target = soften(teachers["distress"][idx.numpy()], 2.0)
    assert torch.allclose(got, -(target * F.log_softmax(logits["distress"], 1)).sum(1).mean())
    flipped = y.clone()
    flipped[:, 2] = torch.where(flipped[:, 2] >= 0, (flipped[:, 2] + 1) % 5, -1)
    assert torch.allclose(d.loss(logits, flipped, idx, 0.0), got)  # no gold at all at lambda = 0
    got.backward()
    assert logits["distress"].grad.abs().sum(1).gt(0).all()  # every row learns, labelled or not
    assert "fade" not in logits  # and only the attributes the step trains are in the loss


def test_in_between_unlabelled_rows_weigh_one_minus_the_gold_share(tiny_data):
    d = Distillation(_teachers(tiny_data), tiny_data.attributes, 2.0)
    y = tiny_data.labels[:10].clone()
    y[:5, 1] = -1
    y[5:, 1] = 0
    idx = torch.arange(10)
    logits = {"shade": torch.zeros(10, 4, requires_grad=True)}
    d.loss(logits, y, idx, 0.75).backward()
    grad = logits["shade"].grad.abs().sum(1)
    assert grad[:5].gt(0).all() and grad[5:].gt(0).all()
    assert float(grad[:5].mean()) < float(grad[5:].mean())  # weight 0.25 against 1


def test_a_distilled_stage_trains_on_every_image_with_the_gold_share_rising_from_0_to_1(tiny_params, tiny_data,
                                                                                        monkeypatch):
    shares = []

    class Recording(Distillation):
        def loss(self, outputs, y, idx, gold_share):
            shares.append(gold_share)
            return super().loss(outputs, y, idx, gold_share)

    params = dataclasses.replace(tiny_params, train=dataclasses.replace(tiny_params.train, epochs_first=2,
                                                                        select_best_epoch=False))
    stage = build_schedule(params)[0]
    model = build_model(params.model, 0)
    monkeypatch.setattr("progattr_core.stages.Distillation", Recording)  # the real loss, its shares recorded
    result = train_stage(model, stage, tiny_data, params, 0, teachers=_teachers(tiny_data))
    assert result.image_passes == 2 * len(tiny_data)  # every image, not only those labelled for the stage
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    assert len(shares) == 2 * -(-len(tiny_data) // params.train.batch_size)
    plain = train_stage(build_model(params.model, 0), stage, tiny_data, params, 0)
    assert plain.image_passes == 2 * int((tiny_data.labels[:, 0] >= 0).sum())
