"""The schedule, the training loop, resume equality and the baselines, on a tiny in-memory set."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from progattr_core.baselines import train_individual, train_multilabel
from progattr_core.errors import DataValidationError, ModelError
from progattr_core.losses import masked_cross_entropy
from progattr_core.metrics import evaluate
from progattr_core.model import build_model
from progattr_core.model_file import load_checkpoint, save_checkpoint
from progattr_core.predict import predict, predict_proba
from progattr_core.schedule import branch_add_stages, build_schedule
from progattr_core.stages import run_schedule, train_stage
from progattr_core.train import LabelledImages, lr_ramp


def test_schedule_follows_the_paper(tiny_params):
    stages = build_schedule(tiny_params)
    assert [s.kind for s in stages] == ["first", "add", "finetune", "add", "finetune", "final"]
    assert stages[0].attributes == ("fade",)
    assert stages[2].attributes == ("fade", "shade") and stages[2].lr_factor == tiny_params.optimizer.finetune_factor
    assert stages[-1].freeze_base and stages[-1].attributes == ("fade", "shade", "distress")
    assert [s.index for s in stages] == list(range(6))


def test_finetune_after_last_keeps_only_the_last_finetune():
    from progattr_core.config import load_params
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    p = load_params(ROOT / "params.yaml", [*TINY, "train.finetune_after=last"])
    stages = build_schedule(p)
    assert [s.kind for s in stages] == ["first", "add", "add", "finetune", "final"]
    assert stages[3].attributes == ("fade", "shade", "distress") and [s.index for s in stages] == list(range(5))
    from progattr_core.errors import ConfigError

    with pytest.raises(ConfigError, match="finetune_after"):
        load_params(ROOT / "params.yaml", [*TINY, "train.finetune_after=never"])


def test_base_attributes_freezes_the_base_after_the_first_k_attributes():
    from progattr_core.config import load_params
    from progattr_core.errors import ConfigError
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    names = [s.name for s in build_schedule(load_params(ROOT / "params.yaml", [*TINY, "train.base_attributes=2"]))]
    assert names == ["first:fade", "add:shade", "finetune:fade+shade", "add:distress", "final"]
    one = build_schedule(load_params(ROOT / "params.yaml", [*TINY, "train.base_attributes=1"]))
    assert [(s.name, s.freeze_base) for s in one] == [("first:fade", False), ("add:shade", True),
                                                      ("add:distress", True), ("final", True)]
    every = load_params(ROOT / "params.yaml", [*TINY, "train.base_attributes=3"])
    assert build_schedule(every) == build_schedule(load_params(ROOT / "params.yaml", TINY))  # 0 = 3 = all
    with pytest.raises(ConfigError, match="base_attributes"):
        load_params(ROOT / "params.yaml", [*TINY, "train.base_attributes=-1"])


def test_first_attributes_trains_several_branches_jointly_in_the_first_stage(tiny_params, tiny_data):
    from progattr_core.config import load_params
    from progattr_core.errors import ConfigError
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    joint = load_params(ROOT / "params.yaml", [*TINY, "train.first_attributes=0"])
    stages = build_schedule(joint)
    assert [(s.name, s.attributes, s.new_attribute) for s in stages] == [
        ("first:fade+shade+distress", ("fade", "shade", "distress"), None), ("final", ("fade", "shade", "distress"), None)]
    two = load_params(ROOT / "params.yaml", [*TINY, "train.first_attributes=2", "train.base_attributes=1"])
    assert [(s.name, s.freeze_base) for s in build_schedule(two)] == [
        ("first:fade+shade", False), ("add:distress", True), ("final", True)]  # the Base learnt from 2 anyway
    model = build_model(joint.model, 0)
    result = train_stage(model, stages[0], tiny_data, joint, 0)
    assert list(model.classes) == ["fade", "shade", "distress"]
    assert result.image_passes == joint.train.epochs_first * len(tiny_data.labelled_for(["fade", "shade", "distress"]))
    with pytest.raises(ConfigError, match="first_attributes"):
        load_params(ROOT / "params.yaml", [*TINY, "train.first_attributes=-2"])


@pytest.mark.parametrize("split_points", ["{}", "{shade: layer2}"])
def test_frozen_base_stages_reuse_the_bases_features(tiny_params, tiny_data, monkeypatch, split_points):
    """A frozen-Base stage computes the Base's outputs once (its end, and the earlier layer a Branch with
    its own split point reads) and reuses them in every epoch and every later frozen stage: the same
    training as running the Base on each batch, and the Base never changes."""
    import progattr_core.train as train
    from progattr_core.config import load_params
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    p = load_params(ROOT / "params.yaml", [*TINY, "train.base_attributes=1", "train.epochs_add=2",
                                            f"model.split_points={split_points}"])
    stages = build_schedule(p)
    models = []
    for limit in (train.FEATURE_CACHE_BYTES, 0):  # 0: too big to keep, the Base runs on every batch
        monkeypatch.setattr(train, "FEATURE_CACHE_BYTES", limit)
        train._features.clear()
        model = build_model(p.model, 0)
        run_schedule(model, stages[:1], tiny_data, p, 0)
        base = copy.deepcopy(model.base.state_dict())
        calls: list[int] = []
        last = list(model.base.children())[-1]  # the Base's last layer runs once per forward of the Base
        # (a Branch with its own split point copies the layer, hook included: count the Base's own calls)
        hook = last.register_forward_hook(lambda m, *_, seen=calls, last=last: seen.append(1) if m is last else None)
        run_schedule(model, stages, tiny_data, p, 0, start=1)
        hook.remove()
        assert all(torch.equal(base[k], v) for k, v in model.base.state_dict().items())
        models.append((model, len(calls)))
    (cached, cached_calls), (plain, plain_calls) = models
    batches = -(-len(tiny_data) // p.train.batch_size)
    assert cached_calls == batches  # once, for every image, shared by both adds and the final stage
    assert plain_calls > 4 * cached_calls
    for k, v in cached.state_dict().items():
        assert torch.allclose(v, plain.state_dict()[k], atol=1e-4), k


def test_attribute_order_param_reorders_the_schedule(tiny_params):
    from progattr_core.config import load_params
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    p = load_params(ROOT / "params.yaml", [*TINY, "train.attribute_order=[distress, fade, shade]"])
    assert [s.new_attribute for s in build_schedule(p) if s.new_attribute] == ["distress", "fade", "shade"]


def test_lr_ramp_is_geometric_from_base_to_branch():
    lrs = lr_ramp(5, 1.0, 0.01)
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == 1.0
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    assert np.allclose(ratios, ratios[0])


def test_missing_labels_never_contribute_to_the_loss(tiny_data):
    y = tiny_data.labels[:6].clone()
    y[:, 1] = -1
    y[0, 1] = 2
    logits = {"fade": torch.randn(6, 3), "shade": torch.randn(6, 4, requires_grad=True)}
    loss = masked_cross_entropy(tiny_data)(logits, y)
    expected = torch.nn.functional.cross_entropy(logits["fade"][y[:, 0] >= 0], y[y[:, 0] >= 0, 0]) + \
        torch.nn.functional.cross_entropy(logits["shade"][:1], y[:1, 1])
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits["shade"].grad[1:].abs().sum() == 0  # unlabelled rows got no gradient at all


def test_class_weights_make_every_class_weigh_the_same_and_average_one():
    from progattr_core.losses import class_weights

    labels = np.array([[0, 0], [0, 1], [0, -1], [1, 0], [0, 0], [0, 0], [2, 0], [-1, 1]])
    data = LabelledImages.from_arrays(np.zeros((8, 3, 4, 4), np.uint8), labels, ["fade", "shade"],
                                      {"fade": ["a", "b", "c", "d"], "shade": ["x", "y"]})
    assert class_weights(data, "none") is None
    w = class_weights(data, "inverse")
    counts = torch.tensor([5.0, 1.0, 1.0, 0.0])
    assert torch.allclose(w["fade"] * counts, torch.tensor([7 / 3, 7 / 3, 7 / 3, 0.0]))  # equal class totals
    assert float((w["fade"] * counts).sum() / counts.sum()) == pytest.approx(1.0)      # average image: 1
    sqrt = class_weights(data, "sqrt_inverse")["shade"]
    assert float(sqrt[1] / sqrt[0]) == pytest.approx((5 / 2) ** 0.5)                     # counts 5 and 2
    y = torch.tensor(labels)
    logits = {"fade": torch.randn(8, 4)}
    expected = torch.nn.functional.cross_entropy(logits["fade"][y[:, 0] >= 0], y[y[:, 0] >= 0, 0], weight=w["fade"])
    assert torch.allclose(masked_cross_entropy(data, w)(logits, y), expected)


def _states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_full_schedule_and_resume_from_any_stage_give_identical_weights(tiny_params, tiny_data, tmp_path):
    stages = build_schedule(tiny_params)
    full = build_model(tiny_params.model, tiny_params.seed)
    ckpts = []
    run_schedule(full, stages, tiny_data, tiny_params, tiny_params.seed,
                 on_stage_end=lambda s, r: ckpts.append(save_checkpoint(tmp_path / f"{s.index}.pt", full, s, r)))
    assert set(full.classes) == {"fade", "shade", "distress"}
    for k in (2, 4):  # resume mid-schedule from the checkpoint of stage k-1, in a "new process"
        resumed, stage = load_checkpoint(ckpts[k - 1])
        assert stage["index"] == k - 1
        run_schedule(resumed, stages, tiny_data, tiny_params, tiny_params.seed, start=k)
        assert _states_equal(full, resumed), f"resume at stage {k} diverged"


def test_branches_run_on_their_own_rows_when_asked(tiny_params, tiny_data):
    model = build_model(tiny_params.model, 0)
    for attr in ("fade", "shade", "distress"):
        model.add_branch(attr, tiny_data.classes[attr])
    twin = copy.deepcopy(model)
    x, y = tiny_data.images[:8], tiny_data.labels[:8].clone()
    y[:, 1] = -1
    y[[1, 4, 6], 1] = 0
    y[:, 2] = -1
    y[5, 2] = 1
    rows = {a: y[:, i] >= 0 for i, a in enumerate(tiny_data.attributes)}
    model.train(), twin.train()
    out = model(x, list(tiny_data.attributes), rows=rows)
    features = twin.base(twin.prepare(x))
    shade = twin.branches["shade"](features[rows["shade"]])
    assert out["fade"].shape[0] == int(rows["fade"].sum()) and torch.allclose(out["shade"], shade, atol=1e-5)
    assert out["distress"].shape[0] == 8  # one labelled row: too few for BatchNorm, the whole batch runs
    bn = "tail.layer4.0.bn1.running_mean"  # the shade Branch's BatchNorm saw its 3 rows only
    assert torch.allclose(model.branches["shade"].state_dict()[bn], twin.branches["shade"].state_dict()[bn])
    y[:, 2] = -1
    assert "distress" not in model(x, list(tiny_data.attributes), rows={**rows, "distress": y[:, 2] >= 0})
    model.eval()
    loss = masked_cross_entropy(tiny_data)
    with torch.no_grad():
        full, sub = model(x, ["fade", "shade"]), model(x, ["fade", "shade"], rows=rows)
        assert torch.allclose(loss(full, y), loss(sub, y), atol=1e-5)  # same loss, less compute


def test_branch_images_labelled_changes_multi_branch_stages_only(tiny_params, tiny_data):
    from progattr_core.config import load_params
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    union = load_params(ROOT / "params.yaml", [*TINY, "train.branch_images=union"])
    labelled = load_params(ROOT / "params.yaml", [*TINY, "train.branch_images=labelled"])
    stages = build_schedule(tiny_params)
    models = []
    for p in (union, labelled):
        model = build_model(p.model, 0)
        run_schedule(model, stages[:2], tiny_data, p, 0)
        models.append(copy.deepcopy(model))
        run_schedule(model, stages[:3], tiny_data, p, 0, start=2)
        models.append(model)
    assert _states_equal(models[0], models[2])  # single-Branch stages train on labelled rows anyway
    assert not _states_equal(models[1], models[3])  # the fine-tune's Branches saw their own rows


def test_stage_needing_a_missing_branch_is_a_clear_error(tiny_params, tiny_data):
    stages = build_schedule(tiny_params)
    with pytest.raises(ModelError, match="no branch for .*run the earlier stages first"):
        train_stage(build_model(tiny_params.model), stages[2], tiny_data, tiny_params, 0)


def test_best_epoch_selection_uses_validation(tiny_params, tiny_data, tiny_val):
    stage = build_schedule(tiny_params)[0]
    stage = type(stage)(**{**stage.to_dict(), "epochs": 3})
    result = train_stage(build_model(tiny_params.model), stage, tiny_data, tiny_params, 0, val=tiny_val)
    assert len(result.val_scores) == 3 and result.best_epoch == int(np.argmax(result.val_scores))
    assert result.image_passes == 3 * len(tiny_data.labelled_for(["fade"]))


def test_frozen_base_branch_add_leaves_old_predictions_bit_identical(tiny_params, tiny_data):
    model = build_model(tiny_params.model)
    for stage in build_schedule(tiny_params)[:3]:
        train_stage(model, stage, tiny_data, tiny_params, 0)
    before = predict_proba(model, tiny_data.images)
    (stage,) = branch_add_stages(["fade", "shade"], "distress", tiny_params, "frozen_base")
    train_stage(model, stage, tiny_data, tiny_params, 0)
    after = predict_proba(model, tiny_data.images)
    assert set(after) == {"fade", "shade", "distress"}
    for attr in before:
        assert np.array_equal(before[attr], after[attr])


def test_baselines_train_and_predict(tiny_params, tiny_data, tiny_val):
    models, results = train_individual(tiny_params, tiny_data, val=tiny_val)
    assert set(models) == {"fade", "shade", "distress"}
    assert results["shade"].n_images == len(tiny_data.labelled_for(["shade"]))
    paper, r_paper = train_multilabel(tiny_params, tiny_data, masked=False, val=tiny_val)
    masked, r_masked = train_multilabel(tiny_params, tiny_data, masked=True, val=tiny_val)
    assert r_paper.n_images == len(tiny_data.labelled_for(tiny_data.attributes, every=True)) < r_masked.n_images
    for model in (paper, masked):
        probs = predict_proba(model, tiny_val.images)
        assert all(np.allclose(p.sum(1), 1, atol=1e-5) for p in probs.values())
        report = evaluate("m", probs, tiny_val.labels.numpy(), tiny_val.attributes, tiny_val.classes)
        assert 0 <= report.overall <= 1


def test_individual_models_keep_their_own_split_whatever_the_progressive_one(tiny_data):
    from progattr_core.config import load_params
    from tests.paths import ROOT
    from tests.unit.conftest import TINY

    # a one-Branch model is the whole ResNet: the split sets only its LR ramp (layer4 at the top LR at layer3)
    params = load_params(ROOT / "params.yaml", [*TINY, "model.split_point=layer4.1"])
    assert params.baselines.lr_grouping == "layer3"
    models, _ = train_individual(params, tiny_data, attributes=["fade"])
    assert models["fade"].split_point == "layer3"
    assert len(models["fade"].layer_groups(["fade"])) == 5  # stem, layer1-3, Branch (layer4 + classifier)
    assert build_model(params.model).split_point == "layer4.1"


def test_predict_returns_label_probability_topk(tiny_params, tiny_data):
    model = build_model(tiny_params.model)
    train_stage(model, build_schedule(tiny_params)[0], tiny_data, tiny_params, 0)
    (first,) = predict(model, tiny_data.images[:1], top_k=2)
    pred = first["fade"]
    assert pred.label in tiny_data.classes["fade"] and len(pred.top_k) == 2
    assert pred.top_k[0] == (pred.label, pred.probability) and pred.top_k[0][1] >= pred.top_k[1][1]


def test_labels_out_of_vocabulary_range_are_rejected(tiny_data):
    bad = tiny_data.labels.clone()
    bad[0, 0] = 7
    with pytest.raises(DataValidationError, match="'fade': label code 7 outside"):
        LabelledImages(tiny_data.images, bad, tiny_data.attributes, tiny_data.classes)


def test_augment_is_one_gather_equal_to_cropping_each_image():
    """The vectorised pad-and-crop (run on the training device) equals cropping image by image."""
    from progattr_core.train import _augment

    x = torch.randint(0, 256, (9, 3, 12, 12), dtype=torch.uint8)
    got = _augment(x, torch.Generator().manual_seed(5), True, 3)
    gen = torch.Generator().manual_seed(5)
    flip = torch.rand(9, generator=gen) < 0.5
    ref = torch.where(flip.view(9, 1, 1, 1), x.flip(3), x)
    padded = torch.nn.functional.pad(ref.float(), (3, 3, 3, 3), mode="reflect").to(torch.uint8)
    offsets = torch.randint(0, 7, (9, 2), generator=gen)
    ref = torch.stack([padded[i, :, dy:dy + 12, dx:dx + 12] for i, (dy, dx) in enumerate(offsets.tolist())])
    assert got.dtype == torch.uint8 and torch.equal(got, ref)
    assert not torch.equal(got, x)


def test_cuda_training_uses_bf16_and_channels_last_only_when_amp_is_on(tiny_params):
    from progattr_core.train import _accelerated

    model = build_model(tiny_params.model)
    assert _accelerated(model, tiny_params.compute.amp, torch.device("cpu")) is None
    assert _accelerated(model, False, torch.device("cuda")) is None
    assert _accelerated(model, tiny_params.compute.amp, torch.device("cuda")) is torch.bfloat16
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_single_training_image_is_skipped_with_a_warning_not_a_batchnorm_crash(tiny_params, tiny_data, caplog):
    one = LabelledImages(tiny_data.images[:1], tiny_data.labels[:1], tiny_data.attributes, tiny_data.classes)
    stage = build_schedule(tiny_params)[0]
    with caplog.at_level("WARNING"):
        result = train_stage(build_model(tiny_params.model), stage, one, tiny_params, 0)
    assert result.image_passes == 0 and "only 1 image" in caplog.text
