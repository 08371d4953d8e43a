"""Bad input through the real entry points (`progattr data import`, `progattr pipeline ...`): every
bad row, image, path or parameter gets a message naming the file/row/value and what is allowed; good
rows next to bad ones are imported; nothing outside the data root is read or written."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from progattr_core.data.images import decode_image
from progattr_core.data.manifest import read_manifest
from tests.unit.data_helpers import params

from .conftest import PARAMS
from .corpus import image_corpus, write_images

TAXONOMY = params().taxonomy


def _import(cli, tmp_path, kind: str, table: str, text: str | bytes, *extra: str) -> int:
    path = tmp_path / table
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return cli("data", "import", kind, "--table", str(path), "--images", str(tmp_path / "imgs"),
               "--article", "jeans", *extra)


def _rejects(tmp_path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "data/rejects.csv", keep_default_na=False)


def _source(tmp_path, name: str) -> pd.DataFrame:
    return read_manifest(tmp_path / "data/raw" / name / "index" / "manifest.parquet")


def _files_under(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_every_image_case_is_imported_or_rejected_by_name(tmp_path, cli):
    corpus = image_corpus()
    write_images(tmp_path / "imgs", corpus)
    rows = "".join(f"{name},no-fade\n" for name in corpus)
    assert _import(cli, tmp_path, "wide", "images.csv", "image,fade\n" + rows) == 0
    source = _source(tmp_path, "images").set_index("image_id")["path"]
    imported = set(source.index)
    assert imported == {n for n, (_, kind) in corpus.items() if kind is None}
    rejects = _rejects(tmp_path)
    by_image = {r.reason.split("'")[1]: r.kind for r in rejects.itertuples()}
    assert by_image == {n: kind for n, (_, kind) in corpus.items() if kind is not None}
    assert "over data.image.max_pixels=40000000" in rejects.set_index("kind").loc["image too large (pixels)", "reason"].iloc[0]
    limits = params().data.image
    for name in imported:  # what was imported decodes to RGB; EXIF rotation applied (40x20 -> 20x40)
        img = decode_image((tmp_path / "data/raw/images" / source[name]).read_bytes(), limits, name)
        assert img.mode == "RGB"
    exif_rotated = tmp_path / "data/raw/images" / source["exif_rotated.jpg"]
    assert decode_image(exif_rotated.read_bytes(), limits).size == (20, 40)


def test_annotation_mistakes_in_a_wide_table_keep_good_rows(tmp_path, cli):
    corpus = image_corpus()
    names = [n for n, (_, kind) in corpus.items() if kind is None]
    write_images(tmp_path / "imgs", {n: corpus[n] for n in names})
    a, b, c, d, e, f = names
    text = ("\ufeffimage,fade,shade,distress\n"       # BOM before the header
            f"{a}, Light Fade ,DARK,\n"                 # case and whitespace variants; empty distress
            f"{b},acid-wash,light,\n"                   # value outside the vocabulary: label dropped
            f"{c},no-fade,medium,\n"
            f"{c},heavy-fade,black,\n"                  # duplicate id with conflicting labels
            f"{d},no-fade,light\n"                      # a field short
            ).encode() + f"{e}\xe9,no-fade,dark,\n".encode("latin-1") + f"{f},no-fade,dark,\n".encode()
    assert _import(cli, tmp_path, "wide", "wide.csv", text) == 0
    m = _source(tmp_path, "wide").set_index("image_id")
    assert list(m.index) == [a, b, c, f]                      # good rows survive their neighbours
    assert (m.loc[a, "fade"], m.loc[a, "shade"]) == ("light-fade", "dark")
    assert pd.isna(m.loc[b, "fade"]) and m.loc[b, "shade"] == "light"
    assert (m.loc[c, "fade"], m.loc[c, "shade"]) == ("no-fade", "medium")   # the first row of c wins
    assert m["distress"].isna().all()                         # an empty attribute: unlabelled, rows kept
    rejects = _rejects(tmp_path).set_index("row")
    assert rejects["kind"].to_dict() == {3: "value not in vocabulary (fade)", 5: "duplicate image id",
                                         6: "malformed row", 7: "not UTF-8"}
    assert "'acid-wash'" in rejects.loc[3, "reason"] and "['no-fade', 'light-fade', 'heavy-fade']" in rejects.loc[3, "reason"]
    assert f"{c!r} already imported from row 4" in rejects.loc[5, "reason"]
    assert "expected 4 fields" in rejects.loc[6, "reason"]
    assert "0xe9" in rejects.loc[7, "reason"] and "UTF-8" in rejects.loc[7, "reason"]
    assert (rejects["source"] == "wide.csv").all()


def test_conflicting_labels_and_unknown_attributes_in_a_long_table(tmp_path, cli):
    corpus = image_corpus()
    write_images(tmp_path / "imgs", {"good.png": corpus["good.png"], "cmyk.jpg": corpus["cmyk.jpg"]})
    text = ("image,attribute,value,annotator\n"
            "good.png,fade,no-fade,ann\n"
            "good.png,fade,HEAVY_FADE,bob\n"           # disagrees with row 2: the cell becomes missing
            "good.png,shade,dark,ann\n"
            "cmyk.jpg,colour,red,ann\n"                 # not an attribute of jeans
            "cmyk.jpg,fade,light-fade,ann\n")
    assert _import(cli, tmp_path, "long", "long.csv", text) == 0
    m = _source(tmp_path, "long").set_index("image_id")
    assert pd.isna(m.loc["good.png", "fade"]) and m.loc["good.png", "shade"] == "dark"
    assert m.loc["cmyk.jpg", "fade"] == "light-fade"
    rejects = _rejects(tmp_path).set_index("kind")["reason"]
    assert "'no-fade' (rows [2])" in rejects["conflicting values"] and "'heavy-fade' (rows [3])" in rejects["conflicting values"]
    assert "'colour' is not one of ['fade', 'shade', 'distress']" in rejects["unknown attribute"]


@pytest.mark.parametrize("kind, header, message", [
    ("wide", "img,fade", "no 'image' column; columns are ['img', 'fade']"),
    ("long", "image,attribute,label", "needs columns ['image', 'attribute', 'value']"),
])
def test_missing_or_renamed_columns_stop_with_the_file_and_columns(tmp_path, cli, capsys, kind, header, message):
    (tmp_path / "imgs").mkdir()
    assert _import(cli, tmp_path, kind, "t.csv", f"{header}\na.png,x,y\n") == 3
    err = capsys.readouterr().err
    assert err.startswith("progattr: error:") and str(tmp_path / "t.csv") in err and message in err
    assert not (tmp_path / "data/raw/t").exists()


def test_a_header_only_or_non_utf8_header_file(tmp_path, cli, capsys):
    (tmp_path / "imgs").mkdir()
    assert _import(cli, tmp_path, "wide", "empty.csv", "image,fade\n") == 0
    assert re.search(r"^rows read +0$", capsys.readouterr().out, re.M)
    assert len(_source(tmp_path, "empty")) == 0
    assert _import(cli, tmp_path, "wide", "latin.csv", "image,f\xe4de\n".encode("latin-1")) == 3
    assert "line 1 (the header) is not UTF-8" in capsys.readouterr().err


def test_paths_outside_the_images_folder_or_the_data_root_are_refused(tmp_path, cli, capsys):
    corpus = image_corpus()
    write_images(tmp_path / "imgs", {"good.png": corpus["good.png"]})
    secret = write_images(tmp_path / "private", {"secret.png": corpus["cmyk.jpg"]}) / "secret.png"
    (tmp_path / "imgs/link.png").symlink_to(secret)
    text = ("image,fade\n"
            "good.png,no-fade\n"
            f"{secret},no-fade\n"                      # absolute
            "../private/secret.png,no-fade\n"          # traversal
            "link.png,no-fade\n")                      # a symlink leading out of the images folder
    assert _import(cli, tmp_path, "wide", "paths.csv", text) == 0
    assert list(_source(tmp_path, "paths")["image_id"]) == ["good.png"]
    rejects = _rejects(tmp_path).set_index("row")
    assert set(rejects["kind"]) == {"unsafe path"}
    assert "is absolute" in rejects.loc[3, "reason"] and "escapes the data root" in rejects.loc[4, "reason"]
    assert f"resolves to {secret}" in rejects.loc[5, "reason"]
    assert "secret.png" not in _files_under(tmp_path / "data")

    # The destination: a symlinked folder under the data root that leads elsewhere is never written through.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "data/raw/linked").symlink_to(elsewhere)
    capsys.readouterr()
    assert _import(cli, tmp_path, "wide", "linked.csv", "image,fade\ngood.png,no-fade\n") == 1
    assert "data/raw/linked is not inside the data root" in capsys.readouterr().err
    assert _import(cli, tmp_path, "wide", "again.csv", "image,fade\ngood.png,no-fade\n", "--dest", "raw/linked") == 3
    assert f"resolves to {elsewhere}/index/manifest.parquet, outside the data root" in capsys.readouterr().err
    assert _files_under(elsewhere) == []


PARAM_CASES = [
    ("optimizer.lr=-1", "optimizer.lr = -1.0; must be > 0"),
    ("train.epochs_first=abc", "train.epochs_first must be int, got str 'abc'"),
    ("optimizer.lr=[1]", "optimizer.lr must be float, got list [1]"),
    ("train.nope=1", "unknown key 'train.nope'"),
    ("model.split_point=layer9", "model.split_point = 'layer9'; allowed: ['layer2', 'layer3', 'layer4.1']"),
    ("taxonomy.jeans.fade=[no-fade]", "taxonomy.jeans.fade = ['no-fade']; an attribute needs at least 2 classes"),
]


@pytest.mark.parametrize("override, message", PARAM_CASES)
@pytest.mark.parametrize("command", [("data", "slice"), ("pipeline", "run")])
def test_bad_params_stop_every_entry_point_with_the_key_and_what_is_allowed(tmp_path, cli, capsys, command,
                                                                             override, message):
    # `pipeline run` loads the params before Prefect starts: no flow run, no MLflow run is made.
    assert cli(*command, "--article", "jeans", overrides=(override,)) == 2
    err = capsys.readouterr().err
    assert err.startswith("progattr: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_an_unknown_key_in_the_params_file_is_named(tmp_path, capsys):
    from progattr.cli import main

    bad = tmp_path / "params.yaml"
    bad.write_text(open(PARAMS).read().replace("  lr: 0.002", "  lr: 0.002\n  learning_rate: 0.1"))
    assert main(["data", "slice", "--article", "jeans", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "optimizer.learning_rate" in err


def test_s3_keys_escaping_the_prefix_are_refused_at_ingest(tmp_path, s3_server, monkeypatch, capsys):
    """`progattr pipeline ingest --source s3://...`: '../' and odd keys are never written anywhere."""
    import boto3

    from progattr.cli import main
    from progattr_core.config import load_params
    from progattr_core.data.synth import generate_catalogue

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="bad-keys")
    p = load_params(PARAMS)
    local = tmp_path / "catalogue"
    generate_catalogue("jeans", 12, local, p.taxonomy, 32, 0.5, 0.8, 0.0, 0, p.data.split, root=local, workers=1)
    for f in local.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "bad-keys", f"cat/{f.relative_to(local).as_posix()}")
    for key in ("cat/../../escape.png", "cat/jeans/../../../escape2.png", "cat/we\\ird.png", "cat/tab\there.png"):
        s3.put_object(Bucket="bad-keys", Key=key, Body=b"x")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(PARAMS, project / "params.yaml")
    rc = main(["pipeline", "ingest", "--article", "jeans", "--source", "s3://bad-keys/cat", "--params",
               str(project / "params.yaml"), "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    assert rc == 0, capsys.readouterr().err
    assert "12 images" in capsys.readouterr().out
    assert not list(tmp_path.rglob("escape*.png")) and not list(tmp_path.rglob("*ird.png"))
    raw = project / "data/raw/cat"
    assert {p.name for p in raw.iterdir()} == {"jeans", ".s3sync-state.json"}
