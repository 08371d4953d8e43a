"""Images under an S3 prefix, read straight into memory: nothing from a key becomes a local path.

Ingestion mirrors a prefix to disk (tasks/s3_source.py); tagging only needs each image once, so it
streams objects instead, with the same client.

The endpoint comes from boto3's own settings (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, or the AWS
config), so the same code reads AWS S3, MinIO or a loopback test server. botocore retries throttling
and connection errors itself (standard mode).
"""

from __future__ import annotations

import functools

from progattr_core.data.images import ImageRejected


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'prefix/') of `s3://bucket/prefix`; ValueError naming the URI otherwise."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket name")
    return bucket, prefix


@functools.lru_cache(maxsize=1)
def _client():
    from tasks.s3_source import make_client  # the data layer's client: same retries and endpoint rules

    return make_client()


def list_objects(uri: str, suffixes: tuple[str, ...]) -> list[str]:
    """s3:// URIs of the objects under `uri` whose key ends with one of `suffixes` (case-insensitive), sorted."""
    bucket, prefix = split_uri(uri)
    keys = []
    for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].lower().endswith(suffixes)]
    return [f"s3://{bucket}/{k}" for k in sorted(keys)]


def read_object(uri: str, max_bytes: int) -> bytes:
    """The object's bytes; ImageRejected if it is empty or larger than `max_bytes` (checked before reading)."""
    bucket, key = split_uri(uri)
    obj = _client().get_object(Bucket=bucket, Key=key)
    size = int(obj["ContentLength"])
    if size == 0 or size > max_bytes:
        obj["Body"].close()
        reason = "zero-byte image file" if size == 0 else f"image file is {size} bytes, over data.image.max_bytes={max_bytes}"
        raise ImageRejected(reason, uri)
    return obj["Body"].read()
