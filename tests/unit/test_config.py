"""params.yaml loading: every problem names the key and the file."""

from __future__ import annotations

import pytest
import yaml

from progattr_core.config import load_params, params_from_dict
from progattr_core.errors import ConfigError
from tests.paths import ROOT


def _raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repo_params_load_into_frozen_dataclasses():
    p = load_params(ROOT / "params.yaml")
    assert p.model.split_point in ("layer2", "layer3", "layer4.1")
    assert list(p.attributes("tops")) == ["sleeve_style", "sleeve_length", "pattern", "neck"]
    assert len(p.attributes("dresses")["shape"]) == 15  # the paper's Table 1
    with pytest.raises(AttributeError):
        p.optimizer.lr = 1.0  # type: ignore[misc]


def test_unknown_key_is_named(tmp_path):
    raw = _raw()
    raw["train"]["learning_rate"] = 0.1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key\(s\) \['train.learning_rate'\]"):
        load_params(path)


def test_missing_key_is_named():
    raw = _raw()
    del raw["model"]["split_point"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['model.split_point'\]"):
        params_from_dict(raw, "p.yaml")


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=-0.1", r"optimizer.lr = -0.1; must be > 0"),
    ("train.batch_size=big", r"train.batch_size must be int, got str 'big'"),
    ("model.split_point=layer5", r"model.split_point = 'layer5'; allowed"),
    ("baselines.lr_grouping=layer5", r"baselines.lr_grouping = 'layer5'; allowed"),
    ("model.arch=vgg16", r"model.arch = 'vgg16'; allowed"),
    ("optimizer.name=rmsprop", r"optimizer.name = 'rmsprop'; allowed: \['sgd', 'adamw'\]"),
    ("train.attribute_order=[neck]", r"train.attribute_order .* must be a permutation"),
    ("train.nope=1", r"unknown key 'train.nope'"),
    ("pipeline.dask_address=localhost:8786", r"pipeline.dask_address = 'localhost:8786'; a Dask scheduler address"),
    ("imports.kaggle.tshirts.keyword_default={collar: round}",
     r"imports.kaggle.tshirts.keyword_default.collar: 'round' must be a class of a keyword attribute"),
    ("imports.kaggle.tshirts.keyword_default={colour: blue}", r"keyword_default.colour: 'blue' must be a class"),
])
def test_bad_values_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_params(ROOT / "params.yaml", [override])


def test_single_class_attribute_in_taxonomy_is_rejected():
    raw = _raw()
    raw["taxonomy"]["jeans"]["fade"] = ["none"]
    with pytest.raises(ConfigError, match=r"taxonomy.jeans.fade = \['none'\]; an attribute needs at least 2"):
        params_from_dict(raw)


def test_digest_changes_only_with_its_sections():
    a = load_params(ROOT / "params.yaml")
    b = load_params(ROOT / "params.yaml", ["evaluation.pr_points=51"])
    assert a.digest("train", "model") == b.digest("train", "model")
    assert a.digest() != b.digest()


def test_a_profile_applies_over_the_file_and_set_wins_over_it():
    plain = load_params(ROOT / "params.yaml")
    paper = load_params(ROOT / "params.yaml", ["profile=paper"])
    assert (paper.profile, paper.model.arch, paper.model.image_size, paper.model.init) == \
        ("paper", "resnet34", 224, "imagenet")
    assert (paper.train.epochs_first, paper.optimizer.finetune_factor) == (1, 0.3)
    assert paper.optimizer.lr == plain.optimizer.lr and paper.serving == plain.serving  # what it does not name stays
    mine = load_params(ROOT / "params.yaml", ["train.epochs_first=2", "profile=paper"])  # --set wins, in any order
    assert (mine.train.epochs_first, mine.model.arch) == (2, "resnet34")
    assert mine.digest("model", "train") != paper.digest("model", "train")
    assert load_params(ROOT / "params.yaml", ["profile=paper", "profile="]).model == plain.model  # the last wins
    snapshot = params_from_dict(mine.to_dict())   # a run's snapshot loads to the same values: not re-applied
    assert snapshot.train.epochs_first == 2 and snapshot.profile == "" and snapshot.to_dict() == mine.to_dict()
    pre = load_params(ROOT / "params.yaml", ["profile=pretrained"])
    assert pre.model.init.startswith("models:/") and pre.train.first_attributes == 0


def test_profile_auto_reads_as_the_sections_and_is_reserved(tmp_path):
    # the committed default: a pipeline run resolves it (tests/flows/test_pretrain_flow.py); read plainly
    # (benchmarks, snapshots) it applies nothing
    plain = load_params(ROOT / "params.yaml")
    assert plain.profile == "auto" and plain.model == load_params(ROOT / "params.yaml", ["profile="]).model
    assert plain.model.init == "scratch" and params_from_dict(plain.to_dict()).profile == ""
    raw = _raw()
    raw["profiles"]["auto"] = {"optimizer.lr": 0.1}
    with pytest.raises(ConfigError, match=r"profiles.auto: the name is reserved"):
        params_from_dict(raw)
    raw = _raw()
    del raw["profiles"]["pretrained"]
    with pytest.raises(ConfigError, match=r"profile = auto picks the 'pretrained' profile .* profiles has none"):
        params_from_dict(raw)
    raw = _raw()
    del raw["profiles"]["pretrained"]
    assert params_from_dict(raw, overrides=["profile="]).profile == ""  # only auto needs it


def test_profile_errors_name_the_profile_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"profile = 'papr'; defined profiles: \['paper', 'pretrained'\]"):
        load_params(ROOT / "params.yaml", ["profile=papr"])
    for values, message in [
        ({"train.learning_rate": 0.1}, r"profiles.mine: unknown key 'train.learning_rate'"),
        ({"pipeline.source": "elsewhere"}, r"profiles.mine.pipeline.source: a profile may only set keys of"),
        ({"model.arch": "vgg16"}, r"\(profile mine\): model.arch = 'vgg16'; allowed"),  # checked unselected too
    ]:
        raw = _raw()
        raw["profiles"]["mine"] = values
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=message):
            load_params(path)


def test_image_size_per_article_resolves_for_the_run_article(tmp_path):
    sizes = "model.image_size={default: 64, tshirts: 128}"
    assert load_params(ROOT / "params.yaml", [sizes, "train.article=tshirts"]).model.image_size == 128
    other = load_params(ROOT / "params.yaml", [sizes, "train.article=jeans"])
    assert other.model.image_size == 64 and params_from_dict(other.to_dict()).model.image_size == 64  # the snapshot
    raw = _raw()
    raw["model"]["image_size"] = {"default": 64, "dresses": 96}
    raw["profiles"]["big"] = {"model.image_size": {"default": 224}}    # a profile may set it too, and wins
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_params(path, ["train.article=dresses"]).model.image_size == 96
    assert load_params(path, ["train.article=dresses", "profile=big"]).model.image_size == 224
    for value, message in [("{default: 64, tshirt: 128}", r"model.image_size names unknown article\(s\) \['tshirt'\]"),
                           ("{tshirts: 128}", r"needs a `default`"),
                           ("{default: 16}", r"model.image_size = 16; must be >= 32")]:
        with pytest.raises(ConfigError, match=message):
            load_params(ROOT / "params.yaml", [f"model.image_size={value}"])


def test_a_coverage_floor_names_an_attribute_and_a_fraction():
    assert load_params(ROOT / "params.yaml").validation.min_coverage("name_pattern") == 0.25
    assert load_params(ROOT / "params.yaml").validation.min_coverage("collar") == 0.5
    with pytest.raises(ConfigError, match=r"min_label_coverage_by_attribute.sleve = 0.3; 'sleve' is no attribute"):
        load_params(ROOT / "params.yaml", ["validation.min_label_coverage_by_attribute={sleve: 0.3}"])
    with pytest.raises(ConfigError, match=r"min_label_coverage_by_attribute.collar = 1.5; a fraction"):
        load_params(ROOT / "params.yaml", ["validation.min_label_coverage_by_attribute={collar: 1.5}"])


def test_a_retired_key_says_what_became_of_it(tmp_path):
    raw = _raw()
    raw["evaluation"]["top_k"] = 3  # a params file from before it was removed
    with pytest.raises(ConfigError, match=r"evaluation.top_k is removed: no code read it \(serving.top_k sets"):
        params_from_dict(raw, "old-params.yaml")
    with pytest.raises(ConfigError, match=r"evaluation.top_k is removed"):
        load_params(ROOT / "params.yaml", ["evaluation.top_k=5"])
    with pytest.raises(ConfigError, match=r"serving.tag_min_probability is removed: each attribute's threshold"):
        load_params(ROOT / "params.yaml", ["serving.tag_min_probability=0.5"])
    renamed = _raw()  # a params file from before the gates had their own section
    renamed["registry"] = renamed.pop("gates")
    with pytest.raises(ConfigError, match=r"registry.max_gap_to_best_baseline is renamed gates.max_gap_to_best_baseline"):
        params_from_dict(renamed, "old-params.yaml")
    with pytest.raises(ConfigError, match=r"baselines.split_point is renamed baselines.lr_grouping"):
        load_params(ROOT / "params.yaml", ["baselines.split_point=layer3"])
    with pytest.raises(ConfigError, match=r"train.lr is renamed optimizer.lr \(the optimiser has its own section"):
        load_params(ROOT / "params.yaml", ["train.lr=0.1"])
    with pytest.raises(ConfigError, match=r"device is renamed compute.device"):
        load_params(ROOT / "params.yaml", ["device=cpu"])
    in_profile = _raw()
    in_profile["profiles"]["paper"]["train.finetune_factor"] = in_profile["profiles"]["paper"].pop("optimizer.finetune_factor")
    with pytest.raises(ConfigError, match=r"profiles.paper.train.finetune_factor is renamed optimizer.finetune_factor"):
        params_from_dict(in_profile, "old-params.yaml")


def test_an_older_snapshot_reads_with_keys_added_since_taken_from_the_project_and_retired_ones_dropped():
    """`registry rebuild` reads a version's params snapshot with this checkout's schema (tasks/rebuild.compare)."""
    import copy

    from progattr_core.config import fill_from

    current = yaml.safe_load((ROOT / "params.yaml").read_text())
    old = yaml.safe_load((ROOT / "params.yaml").read_text())
    del old["model"]["split_points"], old["evaluation"]["split_advice_margin"], old["taxonomy"]["dresses"]
    old["evaluation"]["top_k"] = 3  # retired since
    old["model"]["split_point"] = "layer2"  # what the version was trained with stays
    old["registry"] = old.pop("gates")  # renamed since: the values move to the new names
    old["registry"]["max_gap_to_best_baseline"] = 0.5
    old["baselines"]["split_point"] = old["baselines"].pop("lr_grouping")
    old["baselines"]["split_point"] = "layer2"
    del old["branch_add"]["max_regression_vs_base"]  # added since
    old["train"].update(old.pop("optimizer"), optimizer=old["train"].get("name", "adamw"))  # the old layout:
    old["train"].pop("name")                                                        # optimiser and compute in train,
    old["device"] = old["compute"].pop("device")                                     # the device at the top
    old["train"].update(old.pop("compute"))
    old["train"]["lr"] = 0.05
    old["profiles"]["paper"]["train.finetune_factor"] = old["profiles"]["paper"].pop("optimizer.finetune_factor")
    with pytest.raises(ConfigError):
        params_from_dict(copy.deepcopy(old))
    p = params_from_dict(fill_from(old, current))
    assert p.model.split_points == {} and p.evaluation.split_advice_margin == 0.02
    assert p.model.split_point == "layer2" and "dresses" not in p.taxonomy  # user mappings are not filled in
    assert (p.gates.max_gap_to_best_baseline, p.baselines.lr_grouping, p.branch_add.max_regression_vs_base) == \
        (0.5, "layer2", 0.02)
    assert (p.optimizer.lr, p.optimizer.name, p.compute.device, p.profiles["paper"]["optimizer.finetune_factor"]) == \
        (0.05, "adamw", "auto", 0.3)
