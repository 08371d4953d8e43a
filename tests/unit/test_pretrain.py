"""Pretraining on a densely labelled catalogue (Kaggle layout), its lineage, and the leakage refusal."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from progattr.cli import main as cli
from progattr_core.errors import DataValidationError
from progattr_core.model import ProgressiveResNet
from progattr_core.model_file import load_model
from progattr_core.pretrain import DataLeakageError, catalogue_vocabularies, check_no_leakage, lineage_path
from tests.unit.data_helpers import ROOT, params, write_image

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
TYPES = ["Watches", "Jeans", "Tshirts"]  # Tshirts: excluded by the committed params
COLOURS = ["Black", "Blue", "Red"]


def kaggle_folder(tmp_path, n: int = 36):
    """styles.csv + images/<id>.jpg: n rows cycling over three article types and colours; one rare
    colour (below any min_class_count > 1) and one literal NA."""
    folder = tmp_path / "kaggle"
    lines = [HEADER]
    for i in range(1, n + 1):
        colour = "Fluorescent Green" if i == 1 else "NA" if i == 2 else COLOURS[i % 3]
        kind = TYPES[(i // 3) % 3]
        lines.append(f"{i},{'Men' if i % 2 else 'Women'},Apparel,Topwear,{kind},{colour},Summer,2012,Casual,Item {i}")
        write_image(folder / "images" / f"{i}.jpg", seed=i, fmt="JPEG")
    (folder / "styles.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_vocabularies_come_from_the_kept_rows_with_enough_images(tmp_path):
    folder = kaggle_folder(tmp_path)
    columns = "pretrain.columns={gender: gender, article_type: articleType, colour: baseColour}"
    vocab = catalogue_vocabularies(folder / "styles.csv", params(columns, "pretrain.min_class_count=2"))
    assert vocab["article_type"] == ("jeans", "watches")           # tshirts excluded; ties in name order
    assert set(vocab["colour"]) == {"black", "blue", "red"}         # the rare colour and NA left out
    assert set(vocab["gender"]) == {"men", "women"}
    with pytest.raises(DataValidationError, match=r"'masterCategory' \(master_category\) has 1 value"):
        catalogue_vocabularies(folder / "styles.csv", params("pretrain.min_class_count=2"))  # one value: no head


def test_pretrain_writes_a_backbone_that_never_saw_the_excluded_articles(tmp_path, capsys):
    folder = kaggle_folder(tmp_path)
    (tmp_path / "data").mkdir()
    columns = "{gender: gender, article_type: articleType, colour: baseColour}"
    out = tmp_path / "models" / "backbone.pt"
    assert cli(["pretrain", "--out", str(out), "--source", str(folder), "--params", str(ROOT / "params.yaml"),
                "--set", f"pretrain.columns={columns}", "pretrain.min_class_count=2", "pretrain.epochs=1",
                "model.image_size=32", "train.batch_size=8", f"data.root={tmp_path}/data",
                f"data.raw={tmp_path}/data/raw", f"data.cache={tmp_path}/data/cache"]) == 0
    printed = capsys.readouterr().out
    assert "heads: gender (2 classes), article_type (2 classes), colour (3 classes)" in printed
    assert f"--set model.init={out}" in printed
    record = json.loads(lineage_path(out).read_text())
    tshirts = {hashlib.sha256((folder / "images" / f"{i}.jpg").read_bytes()).hexdigest()
               for i in range(1, 37) if TYPES[(i // 3) % 3] == "Tshirts"}
    assert record["n_images"] == 24 == len(record["sha256"]) and not tshirts & set(record["sha256"])
    assert record["excluded_article_types"] == ["Tshirts", "Shirts", "Tops"]
    backbone = load_model(out)
    assert backbone.kind == "multilabel" and list(backbone.classes) == ["gender", "article_type", "colour"]
    started = ProgressiveResNet("resnet18", "layer3", 32, [0.5] * 3, [0.25] * 3, init=str(out))
    assert torch.equal(started.base.conv1.weight, backbone.net.conv1.weight)
    assert torch.equal(started.tail_template.layer4[1].conv2.weight, backbone.net.layer4[1].conv2.weight)


def test_a_registered_backbone_is_what_models_uri_init_starts_from(tmp_path, capsys):
    """`pretrain --register` -> progattr-backbone version 1; model.init=models:/progattr-backbone/1 makes a
    run's params point at a fetched copy of that file, with its lineage beside it for the leakage check."""
    from progattr_core.errors import ConfigError
    from tasks.context import make_context

    folder = kaggle_folder(tmp_path)
    store = [f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"mlflow.artifact_root={tmp_path}/art",
             f"data.cache={tmp_path}/data/cache"]
    out = tmp_path / "backbone.pt"
    assert cli(["pretrain", "--out", str(out), "--source", str(folder), "--register", "--params", str(ROOT / "params.yaml"),
                "--set", "pretrain.columns={gender: gender, article_type: articleType}", "pretrain.min_class_count=2",
                "pretrain.epochs=1", "model.image_size=32", "train.batch_size=8", f"data.root={tmp_path}/data",
                f"data.raw={tmp_path}/data/raw", *store]) == 0
    printed = capsys.readouterr().out
    assert "registered progattr-backbone version 1" in printed and "--set model.init=models:/progattr-backbone/1" in printed
    ctx = make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone/1"])
    local = tmp_path / "data/cache/backbones/progattr-backbone-v1/model.pt"
    assert ctx.params().model.init == str(local) and ctx.model_init == "models:/progattr-backbone/1"
    assert local.read_bytes() == out.read_bytes() and lineage_path(local).read_text() == lineage_path(out).read_text()
    assert make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone/1"]).params() \
        .model.init == str(local)                                         # fetched once, then reused
    with pytest.raises(ConfigError, match="models:/progattr-backbone@champion: no such version in the registry"):
        make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone@champion"])
    with pytest.raises(ConfigError, match="not a registry reference"):
        make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone"])
    from tracking.registry import BACKBONE, Registry

    Registry(f"sqlite:///{tmp_path}/mlflow.db").move_alias(BACKBONE, "champion", "1")
    by_alias = make_context(ROOT / "params.yaml", "jeans", [*store, "model.init=models:/progattr-backbone@champion"])
    assert (by_alias.model_init, by_alias.model_init_version) == ("models:/progattr-backbone@champion",
                                                                  "models:/progattr-backbone/1")  # pinned


def test_a_backbone_that_saw_a_test_image_is_refused_naming_both(tmp_path, caplog):
    backbone = tmp_path / "backbone.pt"
    backbone.write_bytes(b"weights")
    lineage_path(backbone).write_text(json.dumps({"sha256": ["a" * 64, "b" * 64]}))
    with pytest.raises(DataLeakageError, match=r"model.init=.*backbone.pt was pretrained on 1 image\(s\) of "
                                               r"tshirts \(v1\)'s test split .*e.g. bbbbbbbbbbbb"):
        check_no_leakage(str(backbone), ["b" * 64, "c" * 64], "tshirts (v1)")
    check_no_leakage(str(backbone), ["c" * 64], "tshirts (v1)")  # no overlap: fine
    check_no_leakage("scratch", ["a" * 64], "tshirts (v1)")
    lineage_path(backbone).unlink()
    check_no_leakage(str(backbone), ["a" * 64], "tshirts (v1)")  # nothing to check: allowed, with a warning
    assert "has no lineage file" in caplog.text
