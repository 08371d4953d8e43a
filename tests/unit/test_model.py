"""Model tests in the timm style: shapes, no NaN, gradients exactly where training should put them."""

from __future__ import annotations

import pytest
import torch

from progattr_core.errors import ModelError, WeightsUnavailableError
from progattr_core.losses import masked_cross_entropy
from progattr_core.model import MultiLabelResNet, ProgressiveResNet, build_model
from progattr_core.model_file import load_checkpoint, load_fit_state, load_model, save_fit_state, save_model
from progattr_core.model_init import ModelInit
from progattr_core.schedule import build_schedule
from progattr_core.stages import _prepare_stage

CLASSES = {"neck": ["round", "v-neck", "boat"], "sleeve_length": ["short", "long"]}


def _model(split: str = "layer3", arch: str = "resnet18") -> ProgressiveResNet:
    m = ProgressiveResNet(arch, split, 32, [0.5] * 3, [0.25] * 3, "scratch", seed=0)
    for a, c in CLASSES.items():
        m.add_branch(a, c)
    return m


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("split", ["layer2", "layer3", "layer4.1"])
def test_output_shape_per_branch_and_finite(split):
    out = _model(split)(_images())
    assert set(out) == set(CLASSES)
    for attr, logits in out.items():
        assert logits.shape == (4, len(CLASSES[attr]))
        assert torch.isfinite(logits).all()


def test_forward_named_subset_runs_only_those_branches():
    out = _model()(_images(), ["neck"])
    assert list(out) == ["neck"]


def test_branch_is_a_copy_of_the_tail_not_shared():
    m = _model()
    a, b = m.branches["neck"].tail, m.branches["sleeve_length"].tail
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb) and pa.data_ptr() != pb.data_ptr()


def test_split_point_layer41_branch_is_only_the_last_block():
    m = ProgressiveResNet("resnet34", "layer4.1", 32, [0.5] * 3, [0.25] * 3)
    m.add_branch("neck", CLASSES["neck"])
    assert len(m.base.layer4) == 2  # resnet34's layer4 has three blocks: 0 and 1 stay in the Base
    tail = m.branches["neck"].tail
    assert len(tail) == 1 and type(tail[0]).__name__ == "BasicBlock"


@pytest.mark.parametrize("kind_index", [0, 1, 2, 5])  # first, add, finetune, final on a 3-attribute schedule
def test_gradients_only_where_the_stage_trains(tiny_params, tiny_data, kind_index):
    stages = build_schedule(tiny_params)
    model = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3)
    for stage in stages[:kind_index + 1]:  # add the branches the stage needs
        _prepare_stage(model, stage, tiny_data)
    stage = stages[kind_index]
    model.train()
    idx = tiny_data.labelled_for(stage.attributes)[:8]
    loss = masked_cross_entropy(tiny_data)(model(tiny_data.images[idx], list(stage.attributes)),
                                           tiny_data.labels[idx])
    loss.backward()
    for name, p in model.named_parameters():
        in_branch = name.startswith("branches.")
        trains = (name.split(".")[1] in stage.attributes) if in_branch else not stage.freeze_base
        assert p.requires_grad == trains, name
        if trains:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{stage.name}: {name} got no gradient"
        else:
            assert p.grad is None, f"{stage.name}: frozen {name} got a gradient"


def test_freeze_base_keeps_batchnorm_statistics():
    m = _model()
    m.freeze_base()
    m.train()
    before = {k: v.clone() for k, v in m.base.state_dict().items()}
    m(_images(8))
    assert all(torch.equal(before[k], v) for k, v in m.base.state_dict().items())


def test_differential_lr_groups_cover_base_then_branches():
    m = _model()
    groups = m.layer_groups(["neck"])
    assert len(groups) == 5  # stem, layer1-3, branch
    assert {id(p) for g in groups for p in g} == {id(p) for p in m.base.parameters()} | {
        id(p) for p in m.branches["neck"].parameters()}


def test_save_load_roundtrip_is_exact_and_self_describing(tmp_path):
    m = _model().eval()
    path = save_model(m, tmp_path / "m.pt")
    blob = torch.load(path, weights_only=True)  # loadable without trusting pickled code
    assert blob["config"]["attributes"] == [[a, c] for a, c in CLASSES.items()]
    back = load_model(path)
    x = _images()
    for a, v in m(x).items():
        assert torch.equal(v, back(x)[a])
    back.add_branch("pattern", ["solid", "striped"])  # the scratch tail template is rebuilt from the seed
    m.add_branch("pattern", ["solid", "striped"])
    assert torch.equal(m(x)["pattern"], back(x)["pattern"])


def test_scratch_template_is_left_out_of_the_file_a_warm_started_one_is_kept(tmp_path):
    m = _model()
    blob = torch.load(save_model(m, tmp_path / "m.pt"), weights_only=True)
    assert blob["extra"] == {}  # rebuildable from (arch, seed): not stored
    # warm-started from that file (seed 9): its template is the file's (seed 0), not seed 9's, so it travels
    warm = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init=str(tmp_path / "m.pt"), seed=9)
    assert not warm.template_from_seed
    for _ in range(2):  # save -> load -> save keeps it
        warm = load_model(save_model(warm, tmp_path / "warm.pt"))
        assert "tail_template" in torch.load(tmp_path / "warm.pt", weights_only=True)["extra"]
    ref = _model()
    for (k, v), (_, v2) in zip(ref.tail_template.state_dict().items(), warm.tail_template.state_dict().items(),
                               strict=True):
        assert torch.equal(v, v2), k  # the warm start took the saved model's (seed-rebuilt) template


def test_multilabel_model_roundtrip(tmp_path):
    m = MultiLabelResNet("resnet18", CLASSES, 32, [0.5] * 3, [0.25] * 3, masked=True).eval()
    out = m(_images())
    assert out["neck"].shape == (4, 3) and out["sleeve_length"].shape == (4, 2)
    back = load_model(save_model(m, tmp_path / "ml.pt"))
    assert back.masked and torch.equal(back(_images())["neck"], out["neck"])


def test_init_from_a_saved_model_reuses_its_base(tmp_path):
    m = _model()
    path = save_model(m, tmp_path / "m.pt")
    warm = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init=str(path), seed=9)
    for (k, v), (k2, v2) in zip(m.base.state_dict().items(), warm.base.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_model_init_forms_and_identity(tmp_path):
    """One reader of model.init: its four forms, a file's identity by content, a clear error for the rest."""
    assert [ModelInit.parse(t).kind for t in ("scratch", "imagenet", "models:/progattr-backbone@champion", "b.pt")] \
        == ["scratch", "imagenet", "registered", "file"]
    assert ModelInit.parse("scratch").identity() == "scratch"
    path = save_model(_model(), tmp_path / "m.pt")
    first = ModelInit.parse(str(path)).identity()
    assert first.startswith("sha256:") and first == ModelInit.parse(str(path)).identity()
    save_model(_model("layer2"), path)
    assert ModelInit.parse(str(path)).identity() != first  # same path, new content: a new identity
    with pytest.raises(ModelError, match="a registered backbone, which a pipeline run fetches"):
        ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init="models:/progattr-backbone/1")
    with pytest.raises(ModelError, match="nor an existing file"):
        ModelInit.parse(str(tmp_path / "gone.pt")).identity()


def test_each_saved_file_kind_is_read_by_its_own_loader_only(tmp_path):
    """A fit state is not a model, a model is not a stage checkpoint: each loader names what it got."""
    path = save_fit_state(tmp_path / "state.pt", {"epoch": 1, "model": _model().state_dict()})
    assert load_fit_state(path)["epoch"] == 1
    with pytest.raises(ModelError, match="a fit state file, not a model or checkpoint"):
        load_model(path)
    with pytest.raises(ModelError, match="a model file, not a checkpoint"):
        load_checkpoint(save_model(_model(), tmp_path / "m.pt"))
    with pytest.raises(ModelError, match="a model file, not a fit state"):
        load_fit_state(tmp_path / "m.pt")


def test_build_model_from_params(tiny_params):
    m = build_model(tiny_params.model)
    assert m.arch == "resnet18" and m.image_size == 32 and not m.classes


def test_wrong_image_shape_is_a_clear_error():
    with pytest.raises(ModelError, match=r"expected images of shape \(N, 3, 32, 32\), got \(4, 1, 32, 32\)"):
        _model()(torch.zeros(4, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ModelError, match="expected images"):
        _model()(torch.zeros(4, 3, 64, 64, dtype=torch.uint8))


def test_attribute_with_one_class_is_rejected():
    with pytest.raises(ModelError, match="'fade' needs at least 2 classes"):
        _model().add_branch("fade", ["none"])
    with pytest.raises(ModelError, match="at least 2 classes"):
        MultiLabelResNet("resnet18", {"fade": ["none"]}, 32, [0.5] * 3, [0.25] * 3)


def test_vocabulary_disagreeing_with_a_loaded_model_is_rejected(tmp_path):
    back = load_model(save_model(_model(), tmp_path / "m.pt"))
    with pytest.raises(ModelError, match="'neck': data vocabulary .* disagrees with the model's"):
        back.check_vocabulary({"neck": ["v-neck", "round", "boat"]})


def test_unknown_split_point_arch_and_attribute():
    with pytest.raises(ModelError, match="unknown split point 'layer9'"):
        ProgressiveResNet("resnet18", "layer9", 32, [0.5] * 3, [0.25] * 3)
    with pytest.raises(ModelError, match="unknown architecture 'vgg16'"):
        ProgressiveResNet("vgg16", "layer3", 32, [0.5] * 3, [0.25] * 3)
    with pytest.raises(ModelError, match=r"unknown attribute\(s\) \['colour'\]"):
        _model()(_images(), ["colour"])


def test_the_imagenet_file_is_found_without_torch_where_torchvision_puts_it(tmp_path, monkeypatch):
    """`profile: auto` looks for torchvision's ImageNet file without importing torch: the table and the hub
    folder must be torchvision's and torch's own, under each way of setting the folder."""
    import sys
    from pathlib import Path

    import torchvision

    from progattr_core.config import ARCHS
    from progattr_core.model_init import IMAGENET_URLS, imagenet_weights

    assert IMAGENET_URLS == {a: getattr(torchvision.models, f"ResNet{a.removeprefix('resnet')}_Weights").DEFAULT.url
                             for a in ARCHS}
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {"HOME": str(tmp_path)}):
        with monkeypatch.context() as m:
            for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
                m.delenv(key, raising=False)
            for key, value in env.items():
                m.setenv(key, value)
            expected = Path(torch.hub.get_dir()) / "checkpoints" / "resnet34-b627a593.pth"  # torch's own answer
            assert imagenet_weights("resnet34")[1] == expected  # a process holding torch asks torch
            m.delitem(sys.modules, "torch")  # a process without torch (the data steps) computes it
            assert imagenet_weights("resnet34")[1] == expected, env


def test_imagenet_weights_offline_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # no route: fail fast, even with internet
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(WeightsUnavailableError, match=r"resnet18-f37072fd\.pth.*TORCH_HOME"):
        ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init="imagenet")


def test_imagenet_init_loads_torchvision_weights_from_the_local_cache(tmp_path, monkeypatch):
    """`model.init: imagenet` with torchvision's file already in $TORCH_HOME (no download): the Base
    and every new Branch start from exactly those weights, and the saved model keeps its template."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(123)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(reference, folder / "resnet18-f37072fd.pth")  # the name torchvision's ResNet18 DEFAULT asks for
    model = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init="imagenet")
    model.add_branch("neck", ["round", "v"])
    assert torch.equal(model.base.conv1.weight, reference["conv1.weight"])
    assert torch.equal(model.base.layer3[1].conv2.weight, reference["layer3.1.conv2.weight"])
    assert torch.equal(model.branches["neck"].tail.layer4[0].conv1.weight, reference["layer4.0.conv1.weight"])
    assert not model.template_from_seed and "tail_template" in model.extra_state()


def test_size_counts_the_weights_a_model_predicts_with_not_its_branch_template(tmp_path):
    """A file-initialised model's saved file also holds the tail template (for adding Branches later);
    its size for comparisons is its weights, the same as a scratch model of the same shape."""
    from progattr_core.model import weights_mb
    from progattr_core.model_file import save_model

    scratch = _model()
    backbone = save_model(scratch, tmp_path / "backbone.pt")
    started = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init=str(backbone))
    for attr, classes in scratch.classes.items():
        started.add_branch(attr, classes)
    assert weights_mb(started) == weights_mb(scratch)
    file_mb = save_model(started, tmp_path / "started.pt").stat().st_size / 1e6
    template_mb = sum(t.numel() * t.element_size() for t in started.tail_template.state_dict().values()) / 1e6
    assert file_mb > weights_mb(started) + 0.9 * template_mb  # the file carries the template; the size does not


def test_a_branch_with_an_earlier_split_point_owns_the_later_layers_and_survives_save_load(tmp_path):
    m = ProgressiveResNet("resnet18", "layer4.1", 32, [0.5] * 3, [0.25] * 3, split_points={"neck": "layer3"})
    for a, c in CLASSES.items():
        m.add_branch(a, c)
    m.eval()
    own, shared = m.branches["neck"].tail, m.branches["sleeve_length"].tail
    assert [n for n, _ in own.named_children()] == ["layer4", "layer4_last"]  # layer4's first block, copied
    assert [n for n, _ in shared.named_children()] == ["layer4_last"]
    assert own.layer4[0].conv1.weight.data_ptr() != m.base.layer4[0].conv1.weight.data_ptr()
    x = _images()
    trunk = m.trunk(m.prepare(x))
    assert set(trunk) == {"layer3", "layer4.1"}
    with torch.no_grad():
        expected = m.branches["neck"](m.base.layer3(m.base.layer2(m.base.layer1(
            m.base.maxpool(m.base.relu(m.base.bn1(m.base.conv1(m.prepare(x)))))))))
        assert torch.allclose(m(x)["neck"], expected, atol=1e-6)
    # the Branch's own layers learn from its loss alone; the Base's layer4 does not see it
    m.train()
    torch.nn.functional.cross_entropy(m(x, ["neck"])["neck"], torch.zeros(4, dtype=torch.long)).backward()
    assert own.layer4[0].conv1.weight.grad is not None and m.base.layer4[0].conv1.weight.grad is None
    m.eval()
    path = save_model(m, tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["config"]["split_points"] == {"neck": "layer3"}
    back = load_model(path)
    assert back.branch_split("neck") == "layer3" and back.branch_split("sleeve_length") == "layer4.1"
    for a, v in m(x).items():
        assert torch.equal(v, back(x)[a])
    back.plan_split_points({"pattern": "layer2"})  # a branch-add's new attribute: planned, then added
    back.add_branch("pattern", ["solid", "striped"])
    assert back(x)["pattern"].shape == (4, 2) and set(back.trunk_points()) == {"layer2", "layer3", "layer4.1"}
    with pytest.raises(ModelError, match="allowed"):
        ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, split_points={"neck": "layer4.1"})


@pytest.mark.parametrize(("size", "batched"), [(32, True), (128, True), (128, False)])
def test_a_model_for_inference_folds_batchnorm_and_answers_as_the_model(size, batched):
    """Tagging and serving answer with BatchNorm folded into the convolutions (channels-last from 128 px for
    batches): the same probabilities to ~1e-6, on running statistics far from the defaults."""
    from progattr_core.predict import for_inference, predict_proba

    m = ProgressiveResNet("resnet18", "layer3", size, [0.5] * 3, [0.25] * 3, "scratch", seed=0)
    for a, c in CLASSES.items():
        m.add_branch(a, c)
    g = torch.Generator().manual_seed(1)
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    fast = for_inference(m.train(), batched)
    assert fast is not m and not m.training  # the model itself is not changed, only put in eval mode
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in fast.modules())
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    conv = next(mod for mod in fast.modules() if isinstance(mod, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (batched and size >= 128)
    images = torch.randint(0, 256, (6, 3, size, size), dtype=torch.uint8, generator=g)
    want, got = predict_proba(m, images), predict_proba(fast, images)
    for a in CLASSES:
        assert abs(want[a] - got[a]).max() < 1e-5 and (want[a].argmax(1) == got[a].argmax(1)).all()


def test_a_model_the_folding_gets_wrong_is_kept_as_built(monkeypatch, caplog):
    """for_inference checks its copy against the model: where they disagree (here a folding that zeroes the
    weights), it answers with the model as built and says so."""
    import torch.nn.utils.fusion

    from progattr_core.predict import for_inference

    real = torch.nn.utils.fusion.fuse_conv_bn_eval

    def wrong(conv, bn):
        fused = real(conv, bn)
        torch.nn.init.zeros_(fused.weight)
        return fused

    monkeypatch.setattr(torch.nn.utils.fusion, "fuse_conv_bn_eval", wrong)
    m = _model()
    assert for_inference(m, batched=True) is m and not m.training
    assert "answering with it as built" in caplog.text
