"""tasks/s3_source.py against moto's in-process S3: only new/changed objects, unsafe keys refused."""

from __future__ import annotations

import pytest

moto = pytest.importorskip("moto")


@pytest.fixture
def s3(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        from tasks.s3_source import make_client

        client = make_client()
        client.create_bucket(Bucket="catalogue")
        yield client


def test_sync_copies_only_new_or_changed_objects(s3, tmp_path):
    from tasks.s3_source import sync_prefix, sync_s3_prefix

    s3.put_object(Bucket="catalogue", Key="shop/a/1.jpg", Body=b"one")
    s3.put_object(Bucket="catalogue", Key="shop/manifest.parquet", Body=b"m")
    s3.put_object(Bucket="catalogue", Key="shop/../evil.jpg", Body=b"x")
    s3.put_object(Bucket="catalogue", Key="shop/b/we|rd.jpg", Body=b"x")
    first = sync_s3_prefix("catalogue", "shop/", tmp_path / "raw", client=s3)
    assert (first["downloaded"], first["unchanged"]) == (2, 0)
    assert (tmp_path / "raw/a/1.jpg").read_bytes() == b"one"
    assert {r["key"] for r in first["rejected"]} == {"shop/../evil.jpg", "shop/b/we|rd.jpg"}
    assert not (tmp_path / "evil.jpg").exists()

    s3.put_object(Bucket="catalogue", Key="shop/a/1.jpg", Body=b"changed")
    s3.put_object(Bucket="catalogue", Key="shop/a/2.jpg", Body=b"two")
    again = sync_s3_prefix("catalogue", "shop/", tmp_path / "raw", client=s3)
    assert (again["downloaded"], again["unchanged"]) == (2, 1)
    assert (tmp_path / "raw/a/1.jpg").read_bytes() == b"changed"
    assert not list((tmp_path / "raw").rglob("*.part-*"))
    assert sync_prefix("s3://catalogue/shop", tmp_path / "raw")["downloaded"] == 0
