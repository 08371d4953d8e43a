"""The training-time estimate: image passes counted from the labels exactly as the training runs make them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from progattr_core.estimate import Throughput, measure_throughput, planned_work
from progattr_core.schedule import build_schedule
from progattr_core.stages import run_schedule


def test_planned_passes_match_what_training_makes(tiny_params, tiny_data):
    from progattr_core.model import build_model

    labelled = tiny_data.labels.numpy() >= 0
    work = {w.name: w for w in planned_work(tiny_params, "jeans", labelled, n_val=0)}
    model = build_model(tiny_params.model, 0)
    results = run_schedule(model, build_schedule(tiny_params), tiny_data, tiny_params, 0)
    assert [work[r.name].passes for r in results] == [r.image_passes for r in results]
    b = tiny_params.baselines
    assert work["individual:fade"].passes == b.epochs * int(labelled[:, 0].sum())
    assert work["multilabel"].passes == b.epochs * int(labelled.all(1).sum())
    assert work["multilabel_masked"].passes == b.epochs * int(labelled.any(1).sum())
    assert work["final"].frozen_base and work["final"].branches == 3


def test_best_epoch_evaluation_is_counted_for_runs_of_more_than_one_epoch(tiny_params):
    labelled = np.ones((10, 3), bool)
    work = {w.name: w for w in planned_work(tiny_params, "jeans", labelled, n_val=7)}
    assert work["first:fade"].evaluated == 0                                  # 1 epoch: nothing to select
    assert work["individual:fade"].evaluated == tiny_params.baselines.epochs * 7


def test_pass_cost_and_measured_throughput(tiny_params):
    t = Throughput(seconds_per_image=0.01, branch_share=0.25)
    assert t.pass_cost(1) == pytest.approx(0.01) and t.pass_cost(3) == pytest.approx(0.015)
    assert t.pass_cost(1, frozen_base=True) == pytest.approx(0.01 * (0.75 / 3 + 0.25))
    measured = measure_throughput(tiny_params, steps=1)
    assert measured.seconds_per_image > 0 and 0 <= measured.branch_share <= 1
    # what model.init names is not loaded: a registry reference (resolved by the pipeline's context) times the same
    pinned = dataclasses.replace(tiny_params, model=dataclasses.replace(tiny_params.model,
                                                                        init="models:/progattr-backbone/latest"))
    assert measure_throughput(pinned, steps=1).seconds_per_image > 0
