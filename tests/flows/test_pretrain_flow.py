"""The pretraining flow for real (`progattr pretrain`: Prefect's test harness, MLflow on SQLite): a
backbone that never saw the excluded articles, registered with its lineage; an epoch checkpoint per
epoch; a run killed after an epoch resumes to the same weights; `model.init=models:/...` starts from it."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch

from progattr.cli import main as cli
from progattr_core.model import ProgressiveResNet
from progattr_core.model_file import load_model, weights_digest
from progattr_core.pretrain import lineage_path
from tests.paths import ROOT
from tests.support import TYPES, kaggle_folder

pytestmark = pytest.mark.usefixtures("prefect_harness")
COLUMNS = "pretrain.columns={gender: gender, article_type: articleType, colour: baseColour}"


def _args(tmp_path, store: str, *extra: str) -> list[str]:
    return ["--params", str(ROOT / "params.yaml"), "--set", COLUMNS, "pretrain.min_class_count=2",
            "model.image_size=32", "train.batch_size=8", f"data.root={tmp_path}/data", f"data.raw={tmp_path}/data/raw",
            f"data.cache={tmp_path}/data/cache", f"pipeline.outputs={tmp_path}/outputs",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/{store}.db", f"mlflow.artifact_root={tmp_path}/{store}-art",
            "mlflow.retry_delay_s=0.1", *extra]


def test_pretrain_registers_a_backbone_that_never_saw_the_excluded_articles(tmp_path, capsys, caplog, monkeypatch):
    from mlflow import MlflowClient

    from progattr_core.errors import ConfigError
    from progattr_core.model_init import imagenet_weights
    from tasks.context import make_context
    from tracking.registry import BACKBONE, Registry

    # `profile: auto` (the committed default) with no Base to be had: the sections' recipe, from scratch, said
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    store = [f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"data.cache={tmp_path}/data/cache"]
    bare = make_context(ROOT / "params.yaml", "jeans", store)
    assert (bare.params().profile, bare.params().model.init, bare.params().model.split_point) == ("", "scratch", "layer3")
    assert bare.recipe.startswith("profile auto -> none: no pretrained resnet18 Base here") and \
        "progattr pretrain --set model.arch=resnet18" in bare.recipe and bare.recipe in caplog.text
    _, weights = imagenet_weights("resnet18")  # ImageNet weights on disk (never downloaded by a run): they
    weights.parent.mkdir(parents=True)         # are taken; only their presence is read here
    weights.touch()
    on_imagenet = make_context(ROOT / "params.yaml", "jeans", store)
    assert (on_imagenet.params().profile, on_imagenet.params().model.init) == ("pretrained", "imagenet")
    assert on_imagenet.recipe == f"profile auto -> pretrained with model.init=imagenet ({weights})"
    weights.unlink()

    folder = kaggle_folder(tmp_path)
    out = tmp_path / "models" / "backbone.pt"
    args = _args(tmp_path, "mlflow", "pretrain.epochs=2", "pretrain.keywords={pattern: {striped: [striped], solid: [solid]}}")
    assert cli(["pretrain", "--out", str(out), "--source", str(folder), *args]) == 0
    printed = capsys.readouterr().out
    assert "backbone models:/progattr-backbone/1: 24 images of 2 article types (excluded: Tshirts, Shirts, Tops)" \
        in printed and "--set model.init=models:/progattr-backbone/1" in printed and f"model.init={out}" in printed
    record = json.loads(lineage_path(out).read_text())
    tshirts = {hashlib.sha256((folder / "images" / f"{i}.jpg").read_bytes()).hexdigest()
               for i in range(1, 37) if TYPES[(i // 3) % 3] == "Tshirts"}
    assert record["n_images"] == 24 == len(record["sha256"]) and not tshirts & set(record["sha256"])
    assert record["excluded_article_types"] == ["Tshirts", "Shirts", "Tops"]
    assert record["article_types"] == ["Jeans", "Watches"]
    backbone = load_model(out)
    assert backbone.kind == "multilabel" and list(backbone.classes) == ["gender", "article_type", "colour", "pattern"]
    assert record["keywords"] == {"pattern": {"striped": ["striped"], "solid": ["solid"]}}
    started = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init=str(out))
    assert torch.equal(started.base.conv1.weight, backbone.net.conv1.weight)
    assert torch.equal(started.tail_template.layer4[1].conv2.weight, backbone.net.layer4[1].conv2.weight)

    # the registry version: its run holds the curves, the last epoch's checkpoint and the lineage
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db")
    (version,) = registry.versions(BACKBONE)
    tags = {k.removeprefix("progattr."): v for k, v in version.tags.items()}
    assert tags["n_images"] == "24" and tags["article_types"] == "Jeans, Watches" and tags["n_article_types"] == "2"
    assert tags["excluded_article_types"] == "Tshirts, Shirts, Tops" and len(tags["data_version"]) == 16
    assert tags["heads"] == "gender, article_type, colour, pattern" and tags["pretrain_key"] and tags["params_digest"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert [m.step for m in client.get_metric_history(version.run_id, "loss")] == [0, 1]
    assert {f.path for f in client.list_artifacts(version.run_id, "checkpoint")} == {"checkpoint/epoch.pt"}

    # the same data and params again: nothing trains, nothing new is registered
    assert cli(["pretrain", "--source", str(folder), *args]) == 0
    again = capsys.readouterr().out
    assert "backbone models:/progattr-backbone/1:" in again and "reused from an earlier run" in again
    assert len(registry.versions(BACKBONE)) == 1

    # model.init=models:/... : a run's params point at a fetched copy, with its lineage for the leakage check
    ctx = make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone/1"])
    local = tmp_path / "data/cache/backbones/progattr-backbone-v1/model.pt"
    assert ctx.params().model.init == str(local) and ctx.model_init == "models:/progattr-backbone/1"
    assert local.read_bytes() == out.read_bytes() and lineage_path(local).read_text() == lineage_path(out).read_text()
    with pytest.raises(ConfigError, match="models:/progattr-backbone@champion: no such version in the registry"):
        make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone@champion"])
    with pytest.raises(ConfigError, match=re.escape(  # `latest` is the newest of any architecture: named, not loaded
            "models:/progattr-backbone/latest is progattr-backbone version 1, a resnet18 backbone, but model.arch is "
            "resnet34; pretrain one: progattr pretrain --set model.arch=resnet34, or set model.arch=resnet18")):
        make_context(ROOT / "params.yaml", "jeans", [*store, "profile=pretrained", "model.arch=resnet34"])
    with pytest.raises(ConfigError, match="not a registry reference"):
        make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone"])
    newest = make_context(ROOT / "params.yaml", "jeans", [*store, "profile=pretrained"])  # models:/.../latest
    assert (newest.model_init, newest.model_init_version) == ("models:/progattr-backbone/latest",
                                                              "models:/progattr-backbone/1")
    assert newest.params().model.init == str(local) and newest.params().model.split_point == "layer4.1"
    from bench.common import resolve_init  # the benchmarks start every method from the same pinned version
    assert resolve_init([*store, "profile=pretrained"]) == ([*store, "profile=pretrained", f"model.init={local}"],
                                                            "models:/progattr-backbone/1")
    assert resolve_init([f"model.init={out}"]) == ([f"model.init={out}"], str(out))
    registry.move_alias(BACKBONE, "champion", "1")
    by_alias = make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone@champion"])
    assert (by_alias.model_init, by_alias.model_init_version) == ("models:/progattr-backbone@champion",
                                                                  "models:/progattr-backbone/1")  # pinned

    # `profile: auto` now takes the registered Base, pinned, with the `pretrained` recipe; a --set model.init wins
    auto = make_context(ROOT / "params.yaml", "jeans", store)
    assert (auto.params().profile, auto.model_init, auto.params().model.init) == \
        ("pretrained", "models:/progattr-backbone/1", str(local))
    assert auto.params().model.split_point == "layer4.1" and auto.recipe.startswith(
        "profile auto -> pretrained with model.init=models:/progattr-backbone/1, the newest registered resnet18 Base "
        "(24 images of 2 article types)")
    # a flow running the training flow inside it (the nightly) hands its choice on: taken as it is, not re-read
    again = make_context(ROOT / "params.yaml", "jeans", store, resolved=auto.resolved)
    assert (again.model_init_version, again.recipe, again.resolved) == (auto.model_init_version, auto.recipe, auto.resolved)
    handed = make_context(ROOT / "params.yaml", "jeans", store, resolved=("", "", "profile auto -> none: the caller's"))
    assert (handed.params().model.init, handed.recipe) == ("scratch", "profile auto -> none: the caller's")
    own = make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=scratch"])
    assert (own.params().profile, own.params().model.init) == ("", "scratch") and "model.init=scratch was set" in own.recipe
    demo_like = make_context(ROOT / "params.yaml", "jeans", ["profile=", *store])
    assert (demo_like.params().model.init, demo_like.recipe) == ("scratch", "profile none (as given)")

    # a ResNet-34 backbone becomes `latest`: a ResNet-18 run is told which version of its own network to pin
    assert cli(["pretrain", "--source", str(folder), *args, "model.arch=resnet34", "pretrain.epochs=1"]) == 0
    assert "backbone models:/progattr-backbone/2:" in capsys.readouterr().out
    assert make_context(ROOT / "params.yaml", "jeans", store).model_init_version == "models:/progattr-backbone/1"
    assert make_context(ROOT / "params.yaml", "jeans", [*store, "model.arch=resnet34"]).model_init_version == \
        "models:/progattr-backbone/2"  # auto: the newest of the run's own architecture
    with pytest.raises(ConfigError, match=re.escape(
            "models:/progattr-backbone/latest is progattr-backbone version 2, a resnet34 backbone, but model.arch is "
            "resnet18; pin one of the resnet18 versions (1): model.init=models:/progattr-backbone/1, or set "
            "model.arch=resnet34")):
        make_context(ROOT / "params.yaml", "jeans", [*store, "profile=pretrained"])


def test_a_pretraining_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path, capsys, monkeypatch):
    import tasks.pretrain as pretrain

    folder = kaggle_folder(tmp_path)
    real_fit = pretrain.fit

    def dies_after_the_first_epoch(*args, on_epoch_end=None, **kwargs):
        def hook(epoch, state):
            on_epoch_end(epoch, state)  # the checkpoint is in MLflow, then the power goes
            if epoch == 0:
                raise RuntimeError("power cut")
        return real_fit(*args, on_epoch_end=hook, **kwargs)

    args = _args(tmp_path, "mlflow", "pretrain.epochs=3")
    monkeypatch.setattr(pretrain, "fit", dies_after_the_first_epoch)
    with pytest.raises(RuntimeError, match="power cut"):
        cli(["pretrain", "--source", str(folder), "--json", *args])
    monkeypatch.setattr(pretrain, "fit", real_fit)
    capsys.readouterr()
    assert cli(["pretrain", "--source", str(folder), "--json", *args]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["run"]["resumed_from_epoch"] == 1 and resumed["run"]["trained_now"]
    assert cli(["pretrain", "--source", str(folder), "--json", *_args(tmp_path, "fresh", "pretrain.epochs=3")]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["run"]["resumed_from_epoch"] == 0 and fresh["run"]["key"] == resumed["run"]["key"]
    from tracking.registry import BACKBONE, Registry

    files = []
    for store in ("mlflow", "fresh"):
        registry = Registry(f"sqlite:///{tmp_path}/{store}.db")
        ref = registry.resolve(f"models:/{BACKBONE}/1")
        files.append(registry.download(ref, tmp_path / f"{store}-download"))
    assert weights_digest(load_model(files[0])) == weights_digest(load_model(files[1]))
