"""Ingest from an S3 prefix served by moto on loopback: objects land in data/raw/<name>, the manifest
points at them, and the generated validation suite passes on the result."""

from __future__ import annotations

import shutil

import pytest

from progattr_core.data.manifest import read_manifest
from tasks.context import make_context
from tasks.ingest import ingest, validate
from tests.paths import ROOT
from tests.support import FLOW_ARTICLE, make_project

pytestmark = pytest.mark.flows


def test_ingest_from_an_s3_prefix(tmp_path, s3_server, monkeypatch):
    import boto3

    _, over = make_project(tmp_path / "upload", n=40)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="catalogue")
    source = tmp_path / "upload/data/raw/mini"
    for f in source.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "catalogue", f"drops/2026-11/mini/{f.relative_to(source).as_posix()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    (tmp_path / "project").mkdir()
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "project/params.yaml")
    ctx = make_context(tmp_path / "project/params.yaml", FLOW_ARTICLE, over)
    data = ingest(ctx, "s3://catalogue/drops/2026-11/mini", track=False)
    assert data.raw_dir == "data/raw/mini" and data.n_images == 40
    df = read_manifest(ctx.path(data.manifest))
    assert all((ctx.path(data.data_root) / p).is_file() for p in df["path"])
    assert validate(ctx, data).success
