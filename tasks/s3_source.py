"""Copy an S3 bucket/prefix to a local folder, fetching only new or changed objects (boto3; any
S3-compatible endpoint such as MinIO through `endpoint_url` or AWS_ENDPOINT_URL).

What was fetched is remembered in `<dest>/.s3sync-state.json` (key -> ETag and size), so a re-run
downloads only objects whose ETag or size changed or whose local file is gone. Keys that would land
outside `dest` ('..', absolute, backslashes, odd characters) are refused and reported. Each object is
downloaded to a temporary name and renamed, so an interrupted run never leaves a partial file in place.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from progattr_core.data.manifest import safe_relative_path
from progattr_core.errors import DataValidationError, ProgattrError

log = logging.getLogger(__name__)


class SourceUnavailableError(ProgattrError):
    """The S3 endpoint kept failing; what was already synced stays, nothing partial is left in place."""

STATE_FILE = ".s3sync-state.json"


def _relative_key(key: str, prefix: str) -> tuple[str | None, str | None]:
    """(path under dest, None) for a safe key, (None, reason) for a refused one, (None, None) for a folder marker."""
    rel = key[len(prefix):].lstrip("/") if key.startswith(prefix) else key
    if not rel or rel.endswith("/"):
        return None, None
    if key.startswith("/"):
        return None, "absolute key"
    try:
        rel = safe_relative_path(rel)  # the manifest's own rule: no '..', NUL, backslash or odd characters
    except DataValidationError as exc:
        return None, str(exc)
    if rel.rsplit("/", 1)[-1] == STATE_FILE:
        return None, "reserved name"
    return rel, None


def _load_state(dest: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads((dest / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}


def _save_state(dest: Path, state: dict[str, dict[str, Any]]) -> None:
    tmp = dest / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, dest / STATE_FILE)


def make_client(endpoint_url: str | None = None):
    return boto3.client("s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def sync_s3_prefix(bucket: str, prefix: str, dest_dir: str | Path, endpoint_url: str | None = None,
                   client: Any = None) -> dict[str, Any]:
    """Mirror s3://bucket/prefix into dest_dir; returns counts and the refused keys with reasons."""
    client = client or make_client(endpoint_url)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    state = _load_state(dest)
    summary: dict[str, Any] = {"downloaded": 0, "unchanged": 0, "bytes": 0, "rejected": []}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel, reason = _relative_key(obj["Key"], prefix)
            if reason:
                summary["rejected"].append({"key": obj["Key"], "reason": reason})
                log.warning("s3://%s/%s refused: %s", bucket, obj["Key"], reason)
                continue
            if rel is None:
                continue
            seen = {"etag": obj["ETag"], "size": obj["Size"]}
            target = dest / rel
            if state.get(rel) == seen and target.is_file() and target.stat().st_size == obj["Size"]:
                summary["unchanged"] += 1
                continue
            _download(client, bucket, obj["Key"], target)
            state[rel] = seen
            summary["downloaded"] += 1
            summary["bytes"] += obj["Size"]
        _save_state(dest, state)  # after every page: a re-run after a crash skips what already landed
    log.info("synced s3://%s/%s -> %s: %s", bucket, prefix, dest, {k: v for k, v in summary.items() if k != "rejected"})
    return summary


def _download(client: Any, bucket: str, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        client.download_file(bucket, key, str(tmp))  # botocore/s3transfer retry a failed or cut transfer
        os.replace(tmp, target)
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise SourceUnavailableError(f"s3://{bucket}/{key}: download failed after the client's retries "
                                     f"(botocore max_attempts=5): {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def sync_prefix(uri: str, dest_dir: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """sync_s3_prefix for an `s3://bucket/prefix` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    try:
        return sync_s3_prefix(parsed.netloc, parsed.path.lstrip("/"), dest_dir, endpoint_url)
    except (Boto3Error, BotoCoreError, ClientError) as exc:  # listing failed after botocore's retries
        raise SourceUnavailableError(f"{uri}: {type(exc).__name__}: {exc}") from exc
